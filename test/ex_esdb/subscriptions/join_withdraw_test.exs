defmodule ExESDB.Subscriptions.JoinWithdrawTest do
  # The half of a timed-out join the suspended-subscription test cannot
  # reach: the subscription answered before the join's deadline but the
  # reply came after its caller gave up, which then withdraws the join.
  # Driven through the subscription's own messages.
  use ExUnit.Case, async: true

  import ExESDB.Test.SubscriptionHelpers

  alias ExESDB.Subscriptions

  setup context, do: ExESDB.Test.NifBackend.start_store(context)

  test "a withdrawn join takes its member out; what it was handed goes to the others",
       %{store: s} do
    selector = {:by_stream, "$all"}
    opts = [concurrency_limit: 2, buffer_size: 2]
    {:ok, sub} = Subscriptions.subscribe_to(s, "withdrawn", selector, self(), opts)
    late = spawn(fn -> Process.sleep(:infinity) end)
    join = make_ref()
    deadline = System.monotonic_time(:millisecond) + 60_000
    assert {:ok, ^sub} = GenServer.call(sub, {:subscribe, late, selector, opts, {join, deadline}})
    append(s, "z", 4)
    mine = receive_events()
    assert length(mine) == 2
    wait_until(fn -> :sys.get_state(sub).sub.subscribers[late].count == 2 end)

    GenServer.cast(sub, {:withdraw, join})
    Subscriptions.ack_event(s, sub, List.last(mine))
    assert Enum.sort(positions(mine ++ receive_events())) == [1, 2, 3, 4]
    assert Map.keys(:sys.get_state(sub).sub.subscribers) == [self()]
    # a second withdraw of the same join changes nothing
    GenServer.cast(sub, {:withdraw, join})
    assert Map.keys(:sys.get_state(sub).sub.subscribers) == [self()]
    Process.exit(late, :kill)
  end

  test "a join answered after its caller gave up leaves nothing in the joiner's mailbox",
       %{store: s} do
    selector = {:by_stream, "$all"}
    opts = [concurrency_limit: 2, buffer_size: 2]
    first = spawn(fn -> Process.sleep(:infinity) end)
    {:ok, sub} = Subscriptions.subscribe_to(s, "late", selector, first, opts)
    # the first subscriber holds 2 unacked; 2 wait for the next one
    append(s, "z", 4)
    wait_until(fn -> :sys.get_state(sub).sub.subscribers[first].count == 2 end)

    # the join as subscribe_to makes it; its reply comes after the caller
    # gave up (as if its call timed out), which then withdraws the join
    join = make_ref()
    deadline = System.monotonic_time(:millisecond) + 60_000
    tag = make_ref()
    send(sub, {:"$gen_call", {self(), tag}, {:subscribe, self(), selector, opts, {join, deadline}}})
    assert_receive {^tag, {:ok, ^sub}}
    GenServer.cast(sub, {:withdraw, join})

    # once the subscription handled both
    assert GenServer.call(sub, :checkpoint) == 0
    refute_received {:subscribed, _}
    refute_received {:events, _}
    assert Map.keys(:sys.get_state(sub).sub.subscribers) == [first]
    Process.exit(first, :kill)
  end
end
