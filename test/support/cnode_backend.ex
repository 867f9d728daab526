defmodule ExESDB.Test.CNodeBackend do
  @moduledoc false
  # For the conformance suites on the C node backend: start_store(context)
  # starts a store whose system launches its own C node
  # (priv/ex_esdb_cnode, through a Port, registered with this test VM's
  # epmd), in a fresh directory, for one test.

  def start_store(context) do
    store = :"cnstore_#{ExESDB.Test.Unique.id()}"
    dir = Path.join(System.tmp_dir!(), "ex_esdb_test/#{store}")
    File.rm_rf!(dir)

    opts =
      [store_id: store, data_dir: dir, durability: :nosync, backend: :cnode] ++
        Map.get(context, :store_opts, [])

    {:ok, pid} = ExUnit.Callbacks.start_supervised({ExESDB.System, opts})
    ExUnit.Callbacks.on_exit(fn -> File.rm_rf(dir) end)
    %{store: store, data_dir: dir, system: pid, store_opts: opts}
  end

  def stop_store(%{store: store}),
    do: ExUnit.Callbacks.stop_supervised!(ExESDB.System.system_name(store))

  def restart_store(%{store: store, store_opts: opts}) do
    ExUnit.Callbacks.stop_supervised!(ExESDB.System.system_name(store))
    ExUnit.Callbacks.start_supervised!({ExESDB.System, opts})
    :ok
  end
end
