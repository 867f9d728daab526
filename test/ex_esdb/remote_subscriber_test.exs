defmodule ExESDB.RemoteSubscriberTest do
  # Subscribers on other BEAM nodes get their events too.
  use ExUnit.Case, async: false

  alias ExESDB.{NewEvent, Streams, Subscriptions}

  setup context do
    args = Enum.flat_map(:code.get_path(), &[~c"-pa", &1])

    {:ok, peer, node} =
      ExESDB.Test.Peer.start(%{name: :"remote_sub_#{ExESDB.Test.Unique.id()}", args: args})

    on_exit(fn -> :peer.stop(peer) end)
    Map.put(ExESDB.Test.NifBackend.start_store(context), :node, node)
  end

  test "transient and persistent subscribers on a peer node", %{store: s, node: node} do
    remote = Node.spawn(node, ExESDB.Test.Echo, :forward, [self()])
    {:ok, _} = Subscriptions.subscribe(s, {:by_stream, "$all"}, remote)
    remote2 = Node.spawn(node, ExESDB.Test.Echo, :forward, [self()])
    {:ok, sub} = Subscriptions.subscribe_to(s, "remote", {:by_stream, "r"}, remote2)
    {:ok, 1} = Streams.append_events(s, "r", :any, [%NewEvent{event_type: "t", data: :hi}])

    assert_receive {:echo, ^node, {:subscribed, ^sub}}, 2000
    assert_receive {:echo, ^node, {:events, [%{data: :hi, stream_id: "r"}]}}, 2000
    assert_receive {:echo, ^node, {:events, [%{data: :hi}]}}, 2000
  end

  test "one relay per node carries its transient subscriptions", %{store: s, node: node} do
    a = Node.spawn(node, ExESDB.Test.Echo, :forward, [self()])
    b = Node.spawn(node, ExESDB.Test.Echo, :forward, [self()])
    {:ok, sub_a} = Subscriptions.subscribe(s, {:by_stream, "one"}, a)
    {:ok, _} = Subscriptions.subscribe(s, {:by_event_payload, %{n: 2}}, b)
    registry = ExESDB.Subscriptions.registry(s)
    assert [{relay, _}] = Registry.lookup(registry, {:relay, node})

    {:ok, 1} = Streams.append_events(s, "one", :any, [%NewEvent{event_type: "t", data: %{n: 1}}])
    {:ok, 1} = Streams.append_events(s, "two", :any, [%NewEvent{event_type: "t", data: %{n: 2}}])
    assert_receive {:echo, ^node, {:events, [%{stream_id: "one"}]}}, 2000
    assert_receive {:echo, ^node, {:events, [%{stream_id: "two"}]}}, 2000
    refute_receive {:echo, _, _}, 200

    assert :ok = Subscriptions.unsubscribe(s, sub_a)
    {:ok, 2} = Streams.append_events(s, "one", :any, [%NewEvent{event_type: "t", data: %{n: 3}}])
    refute_receive {:echo, _, _}, 200

    # the last remote subscriber goes: so does the relay
    ref = Process.monitor(relay)
    Process.exit(b, :kill)
    assert_receive {:DOWN, ^ref, :process, ^relay, :normal}, 2000
  end

  test "a remote subscriber has credit too: overflow, grants and the store going",
       %{store: s, node: node} do
    a = Node.spawn(node, ExESDB.Test.Echo, :forward, [self()])
    b = Node.spawn(node, ExESDB.Test.Echo, :forward, [self()])
    {:ok, sub_a} = Subscriptions.subscribe(s, {:by_stream, "one"}, a, credit: 2)
    {:ok, sub_b} = Subscriptions.subscribe(s, {:by_stream, "two"}, b, credit: 2)
    two = [%NewEvent{event_type: "t", data: 1}, %NewEvent{event_type: "t", data: 2}]

    {:ok, 2} = Streams.append_events(s, "one", :any, two)
    assert_receive {:echo, ^node, {:events, [_, _]}}, 2000
    {:ok, 4} = Streams.append_events(s, "one", :any, two)
    assert_receive {:echo, ^node, {:subscription_overflow, ^sub_a, 3}}, 2000

    {:ok, 2} = Streams.append_events(s, "two", :any, two)
    assert_receive {:echo, ^node, {:events, [_, _]}}, 2000
    assert :ok = Subscriptions.grant(s, sub_b, 2)
    {:ok, 4} = Streams.append_events(s, "two", :any, two)
    assert_receive {:echo, ^node, {:events, [_, _]}}, 2000
    refute_receive {:echo, _, {:subscription_overflow, _, _}}, 100

    stop_supervised!(ExESDB.System.system_name(s))
    assert_receive {:echo, ^node, {:subscription_down, ^sub_b, :closed}}, 2000
  end

  test "a remote subscription whose transform raises ends alone", %{store: s, node: node} do
    a = Node.spawn(node, ExESDB.Test.Echo, :forward, [self()])
    b = Node.spawn(node, ExESDB.Test.Echo, :forward, [self()])
    {:ok, _} = Subscriptions.subscribe(s, {:by_stream, "one"}, a)
    {:ok, sub_b} = Subscriptions.subscribe(s, {:by_stream, "two"}, b, transform: &raise_on/1)

    log =
      ExUnit.CaptureLog.capture_log(fn ->
        {:ok, 1} = Streams.append_events(s, "two", :any, [%NewEvent{event_type: "t", data: 1}])
        {:ok, 1} = Streams.append_events(s, "one", :any, [%NewEvent{event_type: "t", data: 2}])
        assert_receive {:echo, ^node, {:events, [%{stream_id: "one"}]}}, 2000
      end)

    assert log =~ "a subscriber's transform failed"
    # told, not left waiting for events that never come
    assert_receive {:echo, ^node, {:subscription_down, ^sub_b, {:failed, %RuntimeError{}}}}, 2000
    refute_receive {:echo, _, {:events, _}}, 200
    assert {:error, :subscription_not_found} = Subscriptions.unsubscribe(s, sub_b)
  end

  test "a relay slower than a call's timeout subscribes once", %{store: s, node: node} do
    a = Node.spawn(node, ExESDB.Test.Echo, :forward, [self()])
    {:ok, _} = Subscriptions.subscribe(s, {:by_stream, "one"}, a)
    registry = ExESDB.Subscriptions.registry(s)
    [{relay, _}] = Registry.lookup(registry, {:relay, node})

    b = Node.spawn(node, ExESDB.Test.Echo, :forward, [self()])
    :sys.suspend(relay)
    me = self()

    caller =
      spawn(fn -> send(me, {:subscribed, Subscriptions.subscribe(s, {:by_stream, "two"}, b)}) end)

    # past GenServer.call's default 5 s the caller still waits: no answer,
    # no exit
    watch = Process.monitor(caller)
    refute_receive {:DOWN, ^watch, :process, ^caller, _}, 5_500
    refute_received {:subscribed, _}
    :sys.resume(relay)
    assert_receive {:subscribed, {:ok, _}}, 2000

    {:ok, 1} = Streams.append_events(s, "two", :any, [%NewEvent{event_type: "t", data: 1}])
    assert_receive {:echo, ^node, {:events, [%{stream_id: "two"}]}}, 2000
    refute_receive {:echo, _, {:events, _}}, 300
  end

  test "a relay ignores a :normal exit signal and stray messages", %{store: s, node: node} do
    a = Node.spawn(node, ExESDB.Test.Echo, :forward, [self()])
    {:ok, {:transient, {relay, _}} = sub} = Subscriptions.subscribe(s, {:by_stream, "one"}, a)
    Process.exit(relay, :normal)
    send(relay, :stray)
    {:ok, 1} = Streams.append_events(s, "one", :any, [%NewEvent{event_type: "t", data: 1}])
    assert_receive {:echo, ^node, {:events, [%{stream_id: "one"}]}}, 2000
    refute_received {:echo, _, {:subscription_down, ^sub, _}}
  end

  def raise_on(_events), do: raise("a subscriber's transform failed")
end
