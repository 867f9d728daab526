defmodule ExESDB.CNodeOwnerWriteTest do
  # On a single C node (no raft) a persistent subscription's checkpoint
  # writes go through its claim on the name, as in a cluster of C nodes:
  # an owner whose session ended (its claim went with it) writes nothing
  # once another owner took the name; the newer owner's checkpoint
  # stays. Two stores of this VM on one C node play two clients (each
  # has its own session). A real C node, real distribution.
  use ExUnit.Case, async: false

  import ExESDB.Test.ClusterHelpers
  alias ExESDB.CNode.Connection
  alias ExESDB.Test.{CNodeCluster, FollowWriter, ManualSubscriber}

  @moduletag timeout: 120_000

  setup do
    dir = tmp_dir!("ex_esdb_cnow")
    cnode = CNodeCluster.start_single(CNodeCluster.bin(), "cnow", Path.join(dir, "ext"))
    %{dir: dir, cnode: cnode}
  end

  defp store_on(ctx) do
    store = :"cnow_#{ExESDB.Test.Unique.id()}"

    start_supervised!(
      Supervisor.child_spec(
        {ExESDB.System,
         store_id: store, data_dir: Path.join(ctx.dir, "#{store}"), cnode: ctx.cnode},
        id: store
      )
    )

    store
  end

  defp checkpoint(store, name) do
    {:ok, s} = ExESDB.Store.fetch(store)
    {:ok, {_, cp, _, _}} = s.backend.checkpoint_get(s, name)
    cp
  end

  test "an owner whose session ended cannot write its checkpoint over the next owner's", ctx do
    a = store_on(ctx)
    b = store_on(ctx)
    {:ok, _} = FollowWriter.append(a, "s", 10)

    {a_sub, a_pid} = ManualSubscriber.start(a, "late", "s")
    ManualSubscriber.seen_upto(a_sub, 10)
    send(a_sub, {:ack, 3})
    wait_until(fn -> checkpoint(a, "late") == 3 end, 30_000)

    # the old owner hears of nothing until another owner runs: its
    # subscriber's ack of an older event waits in its mailbox, then its
    # session ends (the claim with it)
    :ok = :sys.suspend(a_pid)
    amref = Process.monitor(a_pid)
    send(a_sub, {:ack, 5})

    wait_until(fn ->
      {:messages, ms} = Process.info(a_pid, :messages)
      Enum.any?(ms, &match?({:"$gen_cast", {:ack, _, 5}}, &1))
    end)

    session = Process.whereis(Connection.session_name(a))
    smref = Process.monitor(session)
    Process.exit(session, :shutdown)
    assert_receive {:DOWN, ^smref, _, _, _}, 10_000

    b_sub =
      wait_until(
        fn ->
          case ManualSubscriber.start(b, "late", "s") do
            {pid, _sub} when is_pid(pid) -> pid
            {:error, :subscription_already_exists} -> nil
          end
        end,
        30_000
      )

    ManualSubscriber.seen_upto(b_sub, 10)
    send(b_sub, {:ack, 10})
    wait_until(fn -> checkpoint(b, "late") == 10 end, 30_000)

    # resumed, it takes the ack while it still counts itself a member
    # (the session's end comes after it) and writes 5: refused, the
    # claim went with the session
    :ok = :sys.resume(a_pid)
    assert_receive {:DOWN, ^amref, _, _, {:shutdown, :subscription_already_exists}}, 30_000
    assert checkpoint(b, "late") == 10
  end
end
