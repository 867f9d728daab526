defmodule ExESDB.RetryTest do
  # Issue 10 item 17: events get their ids once (NewEvent.new/1), so an
  # append retried with the same list is recognised by the store and
  # written once: at an exact expected version, or at the stream's tail
  # with :any. An :any retry after other appends is recognised only when
  # marked (retry: true, issue 12).
  use ExUnit.Case, async: true
  doctest ExESDB.NewEvent

  alias ExESDB.{NewEvent, Store, Streams, Test.NifBackend}

  setup context, do: NifBackend.start_store(context)

  defp events(n), do: for(i <- 1..n, do: NewEvent.new(event_type: "t", data: i))

  defp datas(s, stream) do
    {:ok, evs} = Streams.get_events(s, stream, 1, 100)
    Enum.map(evs, & &1.data)
  end

  test "new/1 gives each event its own id once" do
    [a, b] = events(2)
    assert {:ok, _} = ExESDB.UUID.to_binary(a.event_id)
    assert a.event_id != b.event_id
    id = ExESDB.UUID.uuid4()
    assert %NewEvent{event_id: ^id} = NewEvent.new(%{event_type: "t", event_id: id})
  end

  test "a retry at the exact expected version is written once", %{store: s} do
    evs = events(3)
    assert {:ok, 3} = Streams.append_events(s, "a", 0, evs)
    assert {:ok, 3} = Streams.append_events(s, "a", 0, evs)
    assert {:ok, 3} = Streams.append_events(s, "a", :no_stream, evs)
    assert {:ok, 4} = Streams.append_events(s, "a", 3, events(1))
    # still recognised after the stream moved on
    assert {:ok, 3} = Streams.append_events(s, "a", 0, evs)
    assert datas(s, "a") == [1, 2, 3, 1]
  end

  test "an :any retry at the stream's tail is written once", %{store: s} do
    evs = events(3)
    assert {:ok, 3} = Streams.append_events(s, "b", :any, evs)
    assert {:ok, 3} = Streams.append_events(s, "b", :any, evs)
    assert datas(s, "b") == [1, 2, 3]
  end

  test "not covered: an :any retry after other appends is written again", %{store: s} do
    evs = events(2)
    assert {:ok, 2} = Streams.append_events(s, "c", :any, evs)
    assert {:ok, 3} = Streams.append_events(s, "c", :any, events(1))
    assert {:ok, 5} = Streams.append_events(s, "c", :any, evs)
  end

  # Issue 12: after {:error, :outcome_unknown} other writers may have
  # appended; a retry marked as one is looked for among the stream's last
  # 1,024 versions (docs/FORMAT.md, "Retries").
  test "a retry marked retry: true after other appends is written once", %{store: s} do
    evs = events(2)
    assert {:ok, 2} = Streams.append_events(s, "r", :any, evs)
    assert {:ok, 3} = Streams.append_events(s, "r", :stream_exists, events(1))
    assert {:ok, 2} = Streams.append_events(s, "r", :any, evs, retry: true)
    assert {:ok, 2} = Streams.append_events(s, "r", :stream_exists, evs, retry: true)
    assert datas(s, "r") == [1, 2, 1]
    # a marked append never applied before is written
    assert {:ok, 5} = Streams.append_events(s, "r", :any, events(2), retry: true)
    assert {:ok, 1} = Streams.append_events(s, "r2", :no_stream, events(1), retry: true)
  end

  # The cluster gateway marks what it sends again after an unknown outcome
  # (ExESDB.Backend.Cluster): here the marked command, through the NIF.
  test "the gateway's resubmission is marked and answers the original", %{store: s} do
    {:ok, store} = Store.fetch(s)
    alias ExESDB.Backend.Cluster
    tuples = for i <- 1..2, do: {ExESDB.UUID.uuid4_binary(), "t", "#{i}", "", nil, nil}
    cmd = {:append, "g", :any, tuples}
    again = Cluster.resubmission(cmd)
    assert again == {:append, "g", {:retry, :any}, tuples}
    assert Cluster.resubmission(again) == again
    assert Cluster.resubmission({:delete_stream, "g", :any}) == {:delete_stream, "g", :any}
    assert {:ok, 2, p} = :ex_esdb_backend.submit(store.handle, cmd, 5000)

    assert {:ok, 3, _} =
             :ex_esdb_backend.submit(
               store.handle,
               Cluster.resubmission({:append, "g", :any, events_tuples(1)}),
               5000
             )

    assert {:ok, 2, ^p} = :ex_esdb_backend.submit(store.handle, again, 5000)
    assert {:ok, 5, _} = :ex_esdb_backend.submit(store.handle, cmd, 5000)
  end

  defp events_tuples(n),
    do: for(_ <- 1..n, do: {ExESDB.UUID.uuid4_binary(), "t", "x", "", nil, nil})

  test "events without ids get new ones at each call", %{store: s} do
    evs = [%NewEvent{event_type: "t", data: 1}]
    assert {:ok, 1} = Streams.append_events(s, "d", :any, evs)
    assert {:ok, 2} = Streams.append_events(s, "d", :any, evs)
  end

  # The issue's case: an append that times out may still commit; retrying
  # the same list writes it once whatever the first answer was.
  test "retrying after a timeout writes the events once", %{store: s} do
    {:ok, store} = Store.fetch(s)

    big =
      for _ <- 1..15,
          do: {ExESDB.UUID.uuid4_binary(), "t", :binary.copy("x", 1_048_576), "", nil, nil}

    busy = make_ref()
    :ok = :ex_esdb_nif.append(store.handle, busy, "big", :any, big)
    evs = events(5)
    first = Streams.append_events(s, "e", 0, evs, timeout: 0)
    assert first in [{:ok, 5}, {:error, :timeout}, {:error, :outcome_unknown}]
    assert {:ok, 5} = Streams.append_events(s, "e", 0, evs, timeout: 60_000)
    assert datas(s, "e") == [1, 2, 3, 4, 5]
    assert_receive {^busy, {:ok, 15, _}}, 60_000
  end

  test "append options are checked", %{store: s} do
    assert {:error, {:invalid_timeout, -1}} =
             Streams.append_events(s, "f", :any, events(1), timeout: -1)

    assert {:error, {:invalid_option, {:nope, 1}}} =
             Streams.append_events(s, "f", :any, events(1), nope: 1)

    assert {:error, {:invalid_option, {:retry, 1}}} =
             Streams.append_events(s, "f", :any, events(1), retry: 1)
  end
end
