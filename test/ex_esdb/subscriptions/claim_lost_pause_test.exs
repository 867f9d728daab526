defmodule ExESDB.Subscriptions.ClaimLostPauseTest do
  # A persistent subscription told its claim is lost (a C node that no
  # longer leads: {:subscription_down, _, :claim_lost}) hands out nothing
  # more while it cannot claim the name again (another owner may run
  # now): acks are recorded, no event goes out, nothing is read. Once it
  # holds the claim again, delivery goes on where it stopped, no gap.
  # Real store; ExESDB.Test.GatedBackend refuses the subscribe (no quorum).
  use ExUnit.Case, async: false

  import ExESDB.Test.SubscriptionHelpers
  alias ExESDB.Subscriptions
  alias ExESDB.Test.GatedBackend

  defp none(_command, _opts), do: false

  defp ack_all(store, sub, acc) do
    receive do
      {:events, evs} ->
        Subscriptions.ack_event(store, sub, List.last(evs))
        ack_all(store, sub, acc ++ evs)
    after
      0 -> acc
    end
  end

  test "a subscription that lost its claim hands out nothing until it claims again" do
    %{store: store} = GatedBackend.start(%{}, &none/2)
    append(store, "s", 5000)

    {:ok, sub} =
      Subscriptions.subscribe_to(store, "claimed", {:by_stream, "s"}, self(), buffer_size: 10)

    assert_receive {:subscribed, ^sub}
    assert_receive {:events, first}, 30_000
    mref = Process.monitor(sub)

    GatedBackend.refuse_subscribe(store, :no_quorum)
    member = :sys.get_state(sub).member
    send(sub, {:subscription_down, {:transient, member}, :claim_lost})
    # handled: the member is gone, and what was handed out before is acked
    wait_until(fn -> :sys.get_state(sub).member == nil end, 30_000)
    Subscriptions.ack_event(store, sub, List.last(first))
    seen = ack_all(store, sub, first)
    # (its resubscribe is refused meanwhile, again and again)
    :sys.get_state(sub)
    refute_receive {:events, _}, 1_000
    assert :sys.get_state(sub).member == nil

    GatedBackend.refuse_subscribe(store, nil)
    events = ack_until(store, sub, 5000, seen)
    assert Enum.map(events, & &1.event_number) == Enum.to_list(1..5000)
    refute_received {:DOWN, ^mref, _, _, _}
  end
end
