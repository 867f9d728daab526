defmodule ExESDB.SubscriptionEdgesTest do
  # Subscriptions at the edges: a store whose subscription supervisor is
  # gone (the window while its system stops), a running subscription
  # joined under its name with another selector, an ack of something that
  # is not an event of the subscription, a bad event type.
  use ExUnit.Case, async: true

  alias ExESDB.{NewEvent, Streams, Subscriptions}
  import ExESDB.Test.SubscriptionHelpers, only: [receive_events: 0]

  setup context, do: ExESDB.Test.NifBackend.start_store(context)

  defp append(s, stream, n) do
    events = for _ <- 1..n, do: %NewEvent{event_type: "t", data: %{k: 1}}
    {:ok, v} = Streams.append_events(s, stream, :any, events)
    v
  end

  # A pid of a node this VM is not connected to: a subscriber the relay
  # would serve.
  defp remote_pid,
    do: :erlang.binary_to_term(<<131, 88, 100, 0, 8, "x@nohost", 1::32, 0::32, 0::32>>)

  test "subscribing while the store's subscriptions are stopped answers, never exits or spins",
       %{store: s} do
    # the window while the system stops: its subscription supervisor is
    # gone, the store not closed yet
    :ok = Supervisor.terminate_child(ExESDB.System.system_name(s), Subscriptions.supervisor(s))

    assert {:error, :store_not_started} =
             Subscriptions.subscribe(s, {:by_event_payload, %{k: 1}}, self())

    assert {:error, :store_not_started} =
             Subscriptions.subscribe_to(s, "gone", {:by_stream, "$all"}, self())

    # the relay path (a subscriber on another node) looped on :noproc
    task = Task.async(fn -> Subscriptions.subscribe(s, {:by_stream, "$all"}, remote_pid()) end)
    assert {:ok, {:error, :store_not_started}} = Task.yield(task, 5_000) || Task.shutdown(task)
  end

  test "a persistent subscription told of the end of a membership it no longer holds runs on",
       %{store: s} do
    {:ok, sub} = Subscriptions.subscribe_to(s, "stale", {:by_stream, "$all"}, self())
    assert_receive {:subscribed, ^sub}
    ref = Process.monitor(sub)
    # (a C node session's claim lost for a membership the subscription
    # had already given up: a join whose barrier failed)
    send(sub, {:subscription_down, {:transient, 123_456_789}, :claim_lost})
    append(s, "a", 1)
    assert [%{stream_id: "a"}] = receive_events()
    refute_received {:DOWN, ^ref, _, _, _}
  end

  test "joining a running subscription with another selector is refused", %{store: s} do
    append(s, "a", 2)
    opts = [concurrency_limit: 2]
    {:ok, sub} = Subscriptions.subscribe_to(s, "cc", {:by_stream, "$all"}, self(), opts)
    other = spawn(fn -> Process.sleep(:infinity) end)

    assert {:error, :subscription_definition_changed} =
             Subscriptions.subscribe_to(s, "cc", {:by_stream, "a"}, other, opts)

    assert {:error, :subscription_definition_changed} =
             Subscriptions.subscribe_to(s, "cc", {:by_event_type, "t"}, other, opts)

    # the same selector still joins
    assert {:ok, ^sub} = Subscriptions.subscribe_to(s, "cc", {:by_stream, "$all"}, other, opts)
  end

  test "a subscriber that is already gone is {:error, :noproc} on every path, and nothing is kept",
       %{store: s} do
    dead = spawn(fn -> :ok end)
    ref = Process.monitor(dead)
    assert_receive {:DOWN, ^ref, :process, ^dead, _}
    {:ok, before} = Subscriptions.get_subscriptions(s)
    {:ok, %{subscribers: members}} = ExESDB.System.stats(s)

    # the NIF's own delivery, a forwarder (filter, transform), persistent
    assert {:error, :noproc} = Subscriptions.subscribe(s, {:by_stream, "$all"}, dead)
    assert {:error, :noproc} = Subscriptions.subscribe(s, {:by_event_payload, %{k: 1}}, dead)

    assert {:error, :noproc} = Subscriptions.subscribe(s, {:by_stream, "a"}, dead, transform: & &1)

    assert {:error, :noproc} = Subscriptions.subscribe_to(s, "gone", {:by_stream, "$all"}, dead)
    # joining a running persistent subscription
    {:ok, _} = Subscriptions.subscribe_to(s, "live", {:by_stream, "$all"}, self())
    assert {:error, :noproc} = Subscriptions.subscribe_to(s, "live", {:by_stream, "$all"}, dead)
    # the Erlang API
    {:ok, store} = ExESDB.Store.fetch(s)
    assert {:error, :noproc} = :ex_esdb.subscribe(store.handle, :all, dead)

    {:ok, now} = Subscriptions.get_subscriptions(s)
    assert Enum.map(now, & &1.name) -- Enum.map(before, & &1.name) == ["live"]
    # the live persistent subscription's membership only
    {:ok, %{subscribers: after_members}} = ExESDB.System.stats(s)
    assert after_members == members + 1
  end

  test "an ack of a struct without the subscription's cursor leaves the subscription running",
       %{store: s} do
    append(s, "a", 3)
    {:ok, sub} = Subscriptions.subscribe_to(s, "acks", {:by_stream, "$all"})
    [first | _] = receive_events()
    ref = Process.monitor(sub)

    ExUnit.CaptureLog.capture_log(fn ->
      :ok = Subscriptions.ack_event(s, sub, %URI{})
      :ok = Subscriptions.ack_event(s, sub, %{first | position: nil})
      # the casts are handled before this call
      assert 0 = GenServer.call(sub, :checkpoint)
    end)

    :ok = Subscriptions.ack_event(s, sub, first)
    assert 1 = GenServer.call(sub, :checkpoint)
    refute_received {:DOWN, ^ref, _, _, _}
  end

  test "a bad event type answers {:invalid_event_type, t}", %{store: s} do
    assert {:error, {:invalid_event_type, ""}} = Streams.get_events_by_type(s, "", 0, 10)
    assert {:error, {:invalid_event_type, :t}} = Streams.get_events_by_type(s, :t, 0, 10)
  end
end

defmodule ExESDB.SubscriptionHandlesTest do
  # A transient subscription's handle names one membership of one open
  # store: after the store restarts, an old handle must not reach a
  # membership of the new one.
  use ExUnit.Case, async: true

  alias ExESDB.{NewEvent, Streams, Subscriptions}

  setup context, do: ExESDB.Test.NifBackend.start_store(context)

  test "a handle from before a restart names no subscription of the reopened store",
       %{store: s, store_opts: opts} do
    {:ok, old} = Subscriptions.subscribe(s, {:by_stream, "$all"})
    stop_supervised!(ExESDB.System.system_name(s))
    assert_receive {:subscription_down, ^old, :closed}
    start_supervised!({ExESDB.System, opts})

    me = self()
    other = spawn(fn -> receive(do: ({:events, evs} -> send(me, {:other_got, evs}))) end)
    {:ok, _new} = Subscriptions.subscribe(s, {:by_stream, "$all"}, other)

    assert {:error, :subscription_not_found} = Subscriptions.grant(s, old, 1)
    assert {:error, :subscription_not_found} = Subscriptions.unsubscribe(s, old)
    {:ok, 1} = Streams.append_events(s, "a", :any, [NewEvent.new(event_type: "t", data: 1)])
    assert_receive {:other_got, [_]}
  end
end

defmodule ExESDB.SubscriptionSignalsTest do
  # The processes between the emitter and transient subscribers trap exits
  # (so that their terminate/2 tells subscribers when the store stops): a
  # :normal exit signal or a stray message must not end them.
  use ExUnit.Case, async: true

  alias ExESDB.{NewEvent, Streams, Subscriptions}

  setup context, do: ExESDB.Test.NifBackend.start_store(context)

  test "a forwarder whose transform raises tells its subscriber why it ended", %{store: s} do
    {:ok, sub} = Subscriptions.subscribe(s, {:by_stream, "a"}, self(), transform: &raise_on/1)

    ExUnit.CaptureLog.capture_log(fn ->
      {:ok, 1} = Streams.append_events(s, "a", :any, [NewEvent.new(event_type: "t", data: 1)])
      # not :closed: the store did not stop
      assert_receive {:subscription_down, ^sub, {:failed, {%RuntimeError{}, _stack}}}
    end)
  end

  def raise_on(_events), do: raise("a subscriber's transform failed")

  test "a forwarder ignores a :normal exit signal and stray messages", %{store: s} do
    {:ok, {:transient, fwd} = sub} = Subscriptions.subscribe(s, {:by_event_payload, %{k: 1}})
    ref = Process.monitor(fwd)
    Process.exit(fwd, :normal)
    send(fwd, :stray)
    {:ok, 1} = Streams.append_events(s, "a", :any, [NewEvent.new(event_type: "t", data: %{k: 1})])
    assert_receive {:events, [%{stream_id: "a"}]}
    refute_received {:DOWN, ^ref, _, _, _}
    refute_received {:subscription_down, ^sub, _}
  end
end
