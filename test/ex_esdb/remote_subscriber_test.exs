defmodule ExESDB.RemoteSubscriberTest do
  # Subscribers on other BEAM nodes get their events too.
  use ExUnit.Case, async: false

  alias ExESDB.{NewEvent, Streams, Subscriptions}

  setup context do
    args = Enum.flat_map(:code.get_path(), &[~c"-pa", &1])

    {:ok, peer, node} =
      :peer.start(%{name: :"remote_sub_#{System.unique_integer([:positive])}", args: args})

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
end
