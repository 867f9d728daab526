defmodule ExESDB.PubSubTest do
  # Committed events broadcast through a Phoenix.PubSub-like module.
  use ExUnit.Case, async: true

  test "committed events are broadcast on $all and per stream" do
    name = :"pubsub_test_#{ExESDB.Test.Unique.id()}"
    Process.register(self(), name)

    %{store: s} =
      ExESDB.Test.NifBackend.start_store(%{store_opts: [pub_sub: {ExESDB.Test.FakePubSub, name}]})

    {:ok, 2} =
      ExESDB.Streams.append_events(s, "acct", :any, [
        %ExESDB.NewEvent{event_type: "t", data: 1},
        %ExESDB.NewEvent{event_type: "t", data: 2}
      ])

    all = "#{s}:$all"
    assert_receive {:broadcast, ^all, {:events, [%{data: 1}, %{data: 2}]}}, 5_000
    stream = "#{s}:acct"
    assert_receive {:broadcast, ^stream, {:events, [_, _]}}, 5_000
  end

  test "the topics are documented in ExESDB.Subscriptions" do
    {:docs_v1, _, _, _, %{"en" => doc}, _, _} = Code.fetch_docs(ExESDB.Subscriptions)
    assert doc =~ ~s("<store_id>:$all")
    assert doc =~ ~s("<store_id>:<stream_id>")
  end
end
