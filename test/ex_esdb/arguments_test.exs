defmodule ExESDB.ArgumentsTest do
  # Issue 10 item 14: a wrong argument to any public function answers
  # {:error, {:invalid_<what>, value}}; nothing raises, nothing is
  # accepted silently, and options are checked when the store starts.
  use ExUnit.Case, async: true

  alias ExESDB.{NewEvent, Snapshots, Streams, Subscriptions}

  setup context, do: ExESDB.Test.NifBackend.start_store(context)

  setup %{store: s} do
    {:ok, 1} = Streams.append_events(s, "s-1", :any, [%NewEvent{event_type: "t", data: 1}])
    :ok
  end

  # The call's answer; a raise or an exit fails the test with what it was.
  defp answer(fun) do
    fun.()
  rescue
    e -> flunk("raised #{inspect(e)}")
  catch
    :exit, reason -> flunk("exited #{inspect(reason)}")
  end

  test "Streams: direction and batch sizes", %{store: s} do
    assert {:error, {:invalid_direction, :sideways}} =
             answer(fn -> Streams.get_events(s, "s-1", 1, 10, :sideways) end)

    assert {:error, {:invalid_direction, "forward"}} =
             answer(fn -> Streams.get_all_events(s, 1, 10, "forward") end)

    assert {:error, {:invalid_read_batch_size, 0}} =
             answer(fn -> Streams.stream_forward(s, "s-1", 1, 0) end)

    assert {:error, {:invalid_read_batch_size, :many}} =
             answer(fn -> Streams.all_forward(s, 1, :many) end)
  end

  test "Subscriptions.subscribe: selector, subscriber and options", %{store: s} do
    assert {:error, {:invalid_selector, "$all"}} =
             answer(fn -> Subscriptions.subscribe(s, "$all") end)

    assert {:error, {:invalid_selector, {:by_stream, ""}}} =
             answer(fn -> Subscriptions.subscribe(s, {:by_stream, ""}) end)

    assert {:error, {:invalid_subscriber, :me}} =
             answer(fn -> Subscriptions.subscribe(s, {:by_stream, "$all"}, :me) end)

    assert {:error, {:invalid_option, {:colour, :blue}}} =
             answer(fn ->
               Subscriptions.subscribe(s, {:by_stream, "$all"}, self(), colour: :blue)
             end)

    assert {:error, {:invalid_transform, :upcase}} =
             answer(fn ->
               Subscriptions.subscribe(s, {:by_stream, "$all"}, self(), transform: :upcase)
             end)

    assert {:error, {:invalid_option, :not_a_list}} =
             answer(fn -> Subscriptions.subscribe(s, {:by_stream, "$all"}, self(), :not_a_list) end)
  end

  test "Subscriptions.subscribe_to: name, selector, options", %{store: s} do
    all = {:by_stream, "$all"}

    assert {:error, {:invalid_subscription_name, ""}} =
             answer(fn -> Subscriptions.subscribe_to(s, "", all) end)

    assert {:error, {:invalid_subscription_name, :billing}} =
             answer(fn -> Subscriptions.subscribe_to(s, :billing, all) end)

    # reserved for the store's own checkpoints (the cluster's barrier)
    assert {:error, {:invalid_subscription_name, "ex_esdb:barrier"}} =
             answer(fn -> Subscriptions.subscribe_to(s, "ex_esdb:barrier", all) end)

    assert {:error, {:invalid_selector, "$all"}} =
             answer(fn -> Subscriptions.subscribe_to(s, "n", "$all") end)

    assert {:error, {:invalid_subscriber, nil}} =
             answer(fn -> Subscriptions.subscribe_to(s, "n", all, nil) end)

    for {opt, bad} <- [
          start_from: :nowhere,
          start_from: -1,
          buffer_size: 0,
          concurrency_limit: :lots,
          partition_by: :stream_id,
          transform: "x",
          ack_key: "position"
        ] do
      reason = :"invalid_#{opt}"

      assert {:error, {^reason, ^bad}} =
               answer(fn -> Subscriptions.subscribe_to(s, "n", all, self(), [{opt, bad}]) end)
    end

    assert {:error, {:invalid_option, {:buffer, 10}}} =
             answer(fn -> Subscriptions.subscribe_to(s, "n", all, self(), buffer: 10) end)

    # nothing was created by the refused calls
    assert {:ok, []} = Subscriptions.get_subscriptions(s)

    # the valid forms still work
    assert {:ok, sub} =
             Subscriptions.subscribe_to(s, "n", all, self(),
               start_from: 0,
               buffer_size: 10,
               concurrency_limit: 2,
               partition_by: & &1.stream_id,
               transform: & &1,
               ack_key: :position
             )

    assert_receive {:subscribed, ^sub}
    assert_receive {:events, [%{position: 1}]}, 5_000
  end

  test "ack, unsubscribe and delete with wrong arguments", %{store: s} do
    assert {:error, {:invalid_subscription, :nope}} =
             answer(fn -> Subscriptions.ack_event(s, :nope, 1) end)

    assert {:error, {:invalid_event, "1"}} =
             answer(fn -> Subscriptions.ack_event(s, self(), "1") end)

    assert {:error, {:invalid_subscription, "x"}} =
             answer(fn -> Subscriptions.unsubscribe(s, "x") end)

    for bad <- [{:transient, :garbage}, {:transient, {:a, :b}}, {:transient, -1}] do
      assert {:error, {:invalid_subscription, ^bad}} =
               answer(fn -> Subscriptions.unsubscribe(s, bad) end)
    end

    assert {:error, {:invalid_subscription_name, ""}} =
             answer(fn -> Subscriptions.delete_subscription(s, "") end)
  end

  test "Snapshots: wrong arguments", %{store: s} do
    assert {:error, {:invalid_snapshot, :x}} = answer(fn -> Snapshots.record_snapshot(s, :x) end)
    assert {:error, {:invalid_source_uuid, ""}} = answer(fn -> Snapshots.read_snapshot(s, "") end)
    assert {:error, {:invalid_source_uuid, 1}} = answer(fn -> Snapshots.delete_snapshot(s, 1) end)
  end

  # Integers past what the store can hold (u64; 32 bits for a receive
  # timeout) raised ArgumentError from the NIF, or came back as
  # {:badarg, stacktrace}.
  test "integers too big for the store answer {:invalid_<what>, value}", %{store: s} do
    big = 2 ** 64
    ev = [NewEvent.new(event_type: "t", data: 1)]

    assert {:error, {:invalid_start, ^big}} = answer(fn -> Streams.get_events(s, "s-1", big, 1) end)
    assert {:error, {:invalid_start, ^big}} = answer(fn -> Streams.get_all_events(s, big, 1) end)

    assert {:error, {:invalid_start, ^big}} =
             answer(fn -> Streams.get_events_by_type(s, "t", big, 1) end)

    assert {:error, {:invalid_start, ^big}} = answer(fn -> Streams.read_page(s, "s-1", big, 1) end)

    # a count or a batch above a page's 10,000 asks for a full page
    assert {:ok, [_], :eof} = answer(fn -> Streams.read_page(s, "s-1", 1, big) end)
    assert {:ok, stream} = answer(fn -> Streams.stream_forward(s, "s-1", 1, big) end)
    assert [_] = Enum.to_list(stream)
    assert {:ok, [_]} = answer(fn -> Streams.get_events(s, "s-1", 1, big) end)

    # the three largest u64 values name :any, :no_stream, :stream_exists
    for v <- [big, big - 1, big - 3] do
      assert {:error, {:invalid_expected_version, ^v}} =
               answer(fn -> Streams.append_events(s, "s-1", v, ev) end)

      assert {:error, {:invalid_expected_version, ^v}} =
               answer(fn -> Streams.delete_stream(s, "s-1", v) end)
    end

    assert {:error, {:invalid_timeout, ^big}} =
             answer(fn -> Streams.append_events(s, "s-1", :any, ev, timeout: big) end)

    snap = %ExESDB.Schema.SnapshotRecord{
      source_uuid: "x",
      source_version: big,
      source_type: "T",
      data: 1
    }

    assert {:error, {:invalid_snapshot, ^snap}} =
             answer(fn -> Snapshots.record_snapshot(s, snap) end)

    assert {:error, {:invalid_start_from, ^big}} =
             answer(fn ->
               Subscriptions.subscribe_to(s, "big", {:by_stream, "$all"}, self(), start_from: big)
             end)

    # credit: 2^64 - 1 is the NIF's "unbounded"
    for c <- [big, big - 1] do
      assert {:error, {:invalid_credit, ^c}} =
               answer(fn -> Subscriptions.subscribe(s, {:by_stream, "$all"}, self(), credit: c) end)
    end

    {:ok, sub} = Subscriptions.subscribe(s, {:by_stream, "$all"})
    assert {:error, {:invalid_credit, ^big}} = answer(fn -> Subscriptions.grant(s, sub, big) end)
    assert :ok = answer(fn -> Subscriptions.grant(s, sub, big - 1) end)

    for member <- [big, -1] do
      assert {:error, {:invalid_subscription, {:transient, ^member}}} =
               answer(fn -> Subscriptions.grant(s, {:transient, member}, 1) end)

      assert {:error, {:invalid_subscription, {:transient, ^member}}} =
               answer(fn -> Subscriptions.unsubscribe(s, {:transient, member}) end)
    end
  end

  test "a timeout a receive cannot wait stops start-up" do
    assert_raise ArgumentError, ~r/:timeout/, fn ->
      ExESDB.Options.resolve(store_id: :big_timeout, timeout: 2 ** 32)
    end
  end

  test "a serializer that does not exist stops start-up" do
    dir = Path.join(System.tmp_dir!(), "ex_esdb_test/no_serializer")

    assert_raise ArgumentError, ~r/:serializer: NoSuchModule/, fn ->
      ExESDB.System.start_link(store_id: :no_serializer, data_dir: dir, serializer: NoSuchModule)
    end
  end
end
