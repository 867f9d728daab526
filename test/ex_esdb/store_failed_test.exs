defmodule ExESDB.StoreFailedTest do
  # A failed flush stops the store's writes, through the NIF and the
  # Erlang API: a peer VM runs with the test shim (make builds
  # build/esdb_io_shim.so) failing the 3rd fdatasync of data.mdb with EIO,
  # as a dying disk does. No append is acknowledged after it.
  use ExUnit.Case, async: false

  @shim Path.expand("build/esdb_io_shim.so")

  setup do
    dir = Path.join(System.tmp_dir!(), "ex_esdb_failed_#{ExESDB.Test.Unique.id()}")
    File.rm_rf!(dir)
    on_exit(fn -> File.rm_rf(dir) end)
    %{path: Path.join(dir, "store")}
  end

  @tag skip: not File.exists?(Path.expand("build/esdb_io_shim.so")) && "run make first"
  test "after a failed flush every write answers {:error, {:store_failed, :io_error}}", %{
    path: path
  } do
    # created here, so the peer's flushes are its appends
    {:ok, store} = :ex_esdb.open(path, %{})
    :ok = :ex_esdb.close(store)

    args = Enum.flat_map(:code.get_path(), &[~c"-pa", &1])
    env = [{~c"LD_PRELOAD", String.to_charlist(@shim)}, {~c"ESDB_SHIM_FAIL_SYNC", ~c"3"}]

    {:ok, peer, node} =
      ExESDB.Test.Peer.start(%{
        name: :"failing_flush_peer#{ExESDB.Test.Unique.id()}",
        args: args,
        env: env
      })

    {results, {:ok, stats}} =
      try do
        :erpc.call(node, ExESDB.Test.FailingFlush, :run, [path, 8])
      after
        :peer.stop(peer)
      end

    {acked, refused} = Enum.split_while(results, &match?({:ok, _}, &1))
    assert length(acked) in 1..2
    assert refused != []
    assert Enum.all?(refused, &(&1 == {:error, {:store_failed, :io_error}})), inspect(refused)
    assert stats.store_failed == :io_error

    # the marker makes the next writable open verify first; this one does
    assert File.exists?(Path.join(path, "store_failed"))
    {:ok, store} = :ex_esdb.open(path, %{})
    refute File.exists?(Path.join(path, "store_failed"))
    assert {:ok, %{events: events, store_failed: nil}} = :ex_esdb.stats(store)
    assert events == length(acked)
    :ok = :ex_esdb.close(store)
  end
end
