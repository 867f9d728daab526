defmodule ExESDB.Test.NifBackend do
  @moduledoc false
  # Starts a single-node store in this VM through the NIF, in a fresh
  # directory, for one test.

  def start_store(context) do
    store = :"store_#{ExESDB.Test.Unique.id()}"
    dir = Path.join(System.tmp_dir!(), "ex_esdb_test/#{store}")
    File.rm_rf!(dir)

    opts =
      [store_id: store, data_dir: dir, durability: :nosync] ++ Map.get(context, :store_opts, [])

    {:ok, pid} = ExUnit.Callbacks.start_supervised({ExESDB.System, opts})
    ExUnit.Callbacks.on_exit(fn -> File.rm_rf(dir) end)
    %{store: store, data_dir: dir, system: pid, store_opts: opts}
  end

  # Stop the store's system.
  def stop_store(%{store: store}),
    do: ExUnit.Callbacks.stop_supervised!(ExESDB.System.system_name(store))

  # Stop the store's system and start it again on the same data.
  def restart_store(%{store: store, store_opts: opts}) do
    ExUnit.Callbacks.stop_supervised!(ExESDB.System.system_name(store))
    ExUnit.Callbacks.start_supervised!({ExESDB.System, opts})
    :ok
  end
end
