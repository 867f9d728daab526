defmodule ExESDB.TransientCreditTest do
  # Issue 10 item 6: a transient subscriber that does not keep up is ended
  # with a message instead of growing its mailbox without bound, and
  # transient subscribers hear when the store goes.
  use ExUnit.Case, async: true

  alias ExESDB.{NewEvent, Streams, Subscriptions}

  setup context, do: ExESDB.Test.NifBackend.start_store(context)

  defp append(s, n, data \\ %{}) do
    events = for _ <- 1..n, do: %NewEvent{event_type: "t", data: data}
    {:ok, _} = Streams.append_events(s, "a", :any, events)
  end

  defp count_events(acc \\ 0) do
    receive do
      {:events, evs} -> count_events(acc + length(evs))
    after
      200 -> acc
    end
  end

  for {name, selector} <- [direct: {:by_stream, "$all"}, filtered: {:by_event_payload, %{k: 1}}] do
    test "#{name}: a subscriber past its credit gets an overflow and nothing more", %{store: s} do
      {:ok, sub} = Subscriptions.subscribe(s, unquote(Macro.escape(selector)), self(), credit: 5)
      append(s, 3, %{k: 1})
      assert count_events() == 3
      # 2 left: a commit of 3 does not fit
      append(s, 3, %{k: 1})
      assert_receive {:subscription_overflow, ^sub, 4}
      append(s, 1, %{k: 1})
      assert count_events() == 0
    end

    test "#{name}: granting credit as events are taken keeps it going", %{store: s} do
      {:ok, sub} = Subscriptions.subscribe(s, unquote(Macro.escape(selector)), self(), credit: 5)

      for _ <- 1..10 do
        append(s, 3, %{k: 1})
        assert count_events() == 3
        :ok = Subscriptions.grant(s, sub, 3)
      end

      refute_received {:subscription_overflow, _, _}
    end
  end

  test "a subscriber that never takes its events: the mailbox stays bounded", %{store: s} do
    me = self()

    sleeper =
      spawn(fn ->
        receive do
          :go -> send(me, {:queue, Process.info(self(), :message_queue_len)})
        end
      end)

    {:ok, sub} = Subscriptions.subscribe(s, {:by_stream, "$all"}, sleeper)
    for _ <- 1..30, do: append(s, 1000)
    send(sleeper, :go)
    assert_receive {:queue, {:message_queue_len, len}}
    # the default credit, 10,000 events in messages of at most 256, and
    # the overflow notice
    assert len <= div(10_000, 256) + 40
    assert {:ok, _} = Subscriptions.subscribe(s, {:by_stream, "$all"}, self())
    assert is_tuple(sub)
  end

  test "credit: :infinity opts out; bad credits are refused", %{store: s} do
    assert {:ok, _} = Subscriptions.subscribe(s, {:by_stream, "$all"}, self(), credit: :infinity)

    assert {:error, {:invalid_credit, 0}} =
             Subscriptions.subscribe(s, {:by_stream, "$all"}, self(), credit: 0)

    assert {:error, {:invalid_credit, :x}} =
             Subscriptions.subscribe(s, {:by_stream, "$all"}, self(), credit: :x)

    {:ok, sub} = Subscriptions.subscribe(s, {:by_stream, "$all"}, self())
    assert {:error, {:invalid_credit, -1}} = Subscriptions.grant(s, sub, -1)
    assert {:error, {:invalid_subscription, :nope}} = Subscriptions.grant(s, :nope, 1)
  end

  for {name, selector} <- [direct: {:by_stream, "$all"}, filtered: {:by_event_payload, %{k: 1}}] do
    test "#{name}: the store stopping tells the subscriber", %{store: s} do
      {:ok, sub} = Subscriptions.subscribe(s, unquote(Macro.escape(selector)), self())
      stop_supervised!(ExESDB.System.system_name(s))
      assert_receive {:subscription_down, ^sub, :closed}
    end
  end
end
