defmodule ExESDB.Commanded.AdapterCase do
  @moduledoc false
  # Compiled only with COMMANDED_PATH set (mix.exs). Starts
  # ExESDB.Commanded.Adapter for each test the way Commanded's own
  # InMemoryTestCase starts its InMemory adapter: child_spec/2, every child
  # under the test supervisor, event_store_meta into the context. Each store
  # gets a fresh directory under the system temp dir, removed afterwards.
  use ExUnit.CaseTemplate

  alias Commanded.Serialization.JsonSerializer
  alias ExESDB.Commanded.Adapter

  # @moduletag cnode: true: the store in a C node (backend: :cnode)
  setup context do
    {:ok, event_store_meta} = start_event_store(if context[:cnode], do: [backend: :cnode], else: [])

    [event_store_meta: event_store_meta]
  end

  @doc "Start one adapter instance under the test supervisor; `{:ok, event_store_meta}`."
  def start_event_store(config) do
    data_dir =
      Path.join(System.tmp_dir!(), "ex_esdb_commanded_#{System.unique_integer([:positive])}")

    on_exit(fn -> File.rm_rf!(data_dir) end)

    config =
      config
      |> Keyword.put_new(:serializer, JsonSerializer)
      |> Keyword.put_new(:data_dir, data_dir)
      |> Keyword.put_new(:durability, :nosync)

    {:ok, child_spec, event_store_meta} = Adapter.child_spec(Adapter, config)

    for child <- List.wrap(child_spec) do
      start_supervised!(child)
    end

    {:ok, event_store_meta}
  end
end
