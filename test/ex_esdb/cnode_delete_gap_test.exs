defmodule ExESDB.CNodeDeleteGapTest do
  # delete_subscription reaching a persistent subscription between two
  # memberships (its C node session ended: its claim on the name went
  # with it, and it has not joined again yet) deletes the checkpoint, as
  # a delete of a subscription that does not run does: it has no claim
  # to write through, and {:error, :claim_lost} is no answer for the
  # caller. The order is made, not waited for: the subscription is
  # suspended while the session's end and then the delete reach its
  # mailbox. A real C node launched by the store.
  use ExUnit.Case, async: false

  import ExESDB.Test.ClusterHelpers, only: [wait_until: 1]
  alias ExESDB.CNode.Connection
  alias ExESDB.Subscriptions
  alias ExESDB.Test.CNodeBackend

  @moduletag timeout: 120_000

  defp queued(pid), do: elem(Process.info(pid, :message_queue_len), 1)

  test "a delete between two memberships deletes the checkpoint", context do
    %{store: s} = CNodeBackend.start_store(context)
    {:ok, sub} = Subscriptions.subscribe_to(s, "gap", {:by_event_type, "t"})
    assert {:ok, [%{name: "gap"}]} = Subscriptions.get_subscriptions(s)

    :ok = :sys.suspend(sub)
    session = Process.whereis(Connection.session_name(s))
    smref = Process.monitor(session)
    Process.exit(session, :shutdown)
    assert_receive {:DOWN, ^smref, _, _, _}, 10_000
    # the session's end is in the subscription's mailbox, the delete after it
    wait_until(fn -> queued(sub) >= 1 end)
    test = self()
    spawn_link(fn -> send(test, {:deleted, Subscriptions.delete_subscription(s, "gap")}) end)
    wait_until(fn -> queued(sub) >= 2 end)
    ref = Process.monitor(sub)
    :ok = :sys.resume(sub)

    assert_receive {:deleted, :ok}, 30_000
    assert_receive {:DOWN, ^ref, :process, ^sub, _}, 30_000
    assert {:ok, []} = Subscriptions.get_subscriptions(s)
  end
end
