defmodule ExESDB.LateReplyTest do
  # A caller that stopped waiting for a write the writer had taken gets
  # {:error, :outcome_unknown} and nothing later: the reply it gave up on
  # never reaches its mailbox (a GenServer would get it as a stray
  # handle_info). A peer VM runs with the test shim (make builds
  # build/esdb_io_shim.so) holding the writer in its flush.
  use ExUnit.Case, async: true

  @shim Path.expand("build/esdb_io_shim.so")

  setup do
    dir = Path.join(System.tmp_dir!(), "ex_esdb_late_#{ExESDB.Test.Unique.id()}")
    File.rm_rf!(dir)
    File.mkdir_p!(dir)
    on_exit(fn -> File.rm_rf(dir) end)
    %{path: Path.join(dir, "store"), hold: Path.join(dir, "hold")}
  end

  @tag skip: not File.exists?(Path.expand("build/esdb_io_shim.so")) && "run make first"
  test "a reply given up on does not come later", %{path: path, hold: hold} do
    args = Enum.flat_map(:code.get_path(), &[~c"-pa", &1])

    env = [
      {~c"LD_PRELOAD", String.to_charlist(@shim)},
      {~c"ESDB_SHIM_HOLD_SYNC", String.to_charlist(hold)}
    ]

    name = :"late_reply_#{ExESDB.Test.Unique.id()}"
    {:ok, peer, node} = ExESDB.Test.Peer.start(%{name: name, args: args, env: env})

    {answer, held, version, mailbox} =
      try do
        :erpc.call(node, ExESDB.Test.LateReply, :run, [path, hold], 60_000)
      after
        :peer.stop(peer)
      end

    assert held, "the writer was not held in its flush"
    assert answer == {:error, :outcome_unknown}
    # it was applied all the same, before the second append
    assert version == 2
    assert mailbox == []
  end
end
