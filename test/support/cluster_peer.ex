defmodule ExESDB.Test.ClusterPeer do
  @moduledoc false
  # Runs on the :peer nodes of the cluster tests (test/ex_esdb/cluster_test.exs).

  alias ExESDB.{NewEvent, Streams}

  @doc "Start a store's system here, not linked to the erpc caller."
  def start(opts) do
    {:ok, _} = Application.ensure_all_started(:ex_esdb)

    case ExESDB.System.start_link(opts) do
      {:ok, pid} ->
        Process.unlink(pid)
        :ok

      other ->
        other
    end
  end

  @doc "Append one event with `id` (a UUID string); the reply."
  def append(store, stream, id) do
    Streams.append_events(store, stream, :any, [
      NewEvent.new(event_type: "t", event_id: id, data: id)
    ])
  end

  @doc "Append, then read the stream here: whether the event is there."
  def append_and_read(store, stream, id) do
    reply = append(store, stream, id)

    case Streams.get_events(store, stream, 1, 10_000) do
      {:ok, events} -> {reply, Enum.any?(events, &(&1.event_id == id))}
      other -> {reply, other}
    end
  end

  @doc """
  n appends of one event each, every one read back here at once: the
  replies that were not {:ok, _} or whose event was not read.
  """
  def read_your_writes(store, stream, n) do
    for _ <- 1..n,
        id = ExESDB.UUID.uuid4(),
        r = append_and_read_back(store, stream, id),
        not match?({{:ok, _}, true}, r),
        do: r
  end

  # Append, then read here the one event at the version acknowledged.
  defp append_and_read_back(store, stream, id) do
    case append(store, stream, id) do
      {:ok, v} = reply ->
        case Streams.get_events(store, stream, v, 1) do
          {:ok, [%{event_id: ^id}]} -> {reply, true}
          other -> {reply, other}
        end

      reply ->
        {reply, :not_appended}
    end
  end

  @doc """
  Through the Erlang API attached to the store here: append one event
  with `id` (16 bytes) and read the stream at once; {reply, seen?}.
  """
  def erlang_append_and_read(store, stream, id) do
    {:ok, h} = :ex_esdb.attach(store)
    reply = :ex_esdb.append(h, stream, :any, [%{event_type: "t", event_id: id}])
    {:ok, events} = :ex_esdb.read_stream(h, stream, 1, 10_000, :forward)
    {reply, Enum.any?(events, &(&1.event_id == id))}
  end

  @doc "Append one event here with the append's `timeout` option: {ms taken, reply}."
  def timed_append(store, stream, timeout) do
    ev = NewEvent.new(event_type: "t", data: 1)
    t0 = System.monotonic_time(:millisecond)
    reply = Streams.append_events(store, stream, :any, [ev], timeout: timeout)
    {System.monotonic_time(:millisecond) - t0, reply}
  end

  @doc "The append command the gateway sends a leader for `events` (tried once)."
  def append_command(store, stream, expected, events) do
    {:ok, s} = ExESDB.Store.fetch(store)
    {:ok, tuples} = ExESDB.EventCodec.encode(events, s.serializer)
    {:append, stream, expected, tuples}
  end

  @doc "Read the stream here, after a barrier when asked: its event ids."
  def read_ids(store, stream, barrier?) do
    if barrier?, do: :ok = ExESDB.Cluster.barrier(store)

    case Streams.get_events(store, stream, 1, 10_000) do
      {:ok, events} -> Enum.map(events, & &1.event_id)
      {:error, :stream_not_found} -> []
    end
  end

  @doc "Every event of this replica as {position, stream, version, id}."
  def dump(store) do
    {:ok, s} = ExESDB.Store.fetch(store)
    page(s.handle.ref, 0, [])
  end

  defp page(ref, from, acc) do
    {:ok, evs, next} = :ex_esdb_backend.read_all(ref, from, 1000, :forward)
    acc = acc ++ for e <- evs, do: {elem(e, 0), elem(e, 1), elem(e, 2), elem(e, 3)}
    if next == :eof, do: acc, else: page(ref, next, acc)
  end

  @doc """
  A process here that asks this node's info of `store` over and over
  until sent :stop, then sends `to` {:led, pid, terms}: the terms in
  which this node was seen leading. A leadership of a few milliseconds
  (a waiting replica handing it on) is seen in the samples.
  """
  def watch_leading(store, to), do: spawn(fn -> watch_leading(store, to, []) end)

  @doc "A command through the store's backend (the gateway in cluster mode)."
  def submit(store, command) do
    {:ok, s} = ExESDB.Store.fetch(store)
    s.backend.submit(s, command, [])
  end

  @doc """
  The processes here waiting for their store's reply to a command
  (in :ex_esdb_backend.call/3's wait/3, the command queued), each with whether
  it runs a try another node's gateway sent (submit_on_leader).
  """
  def waiting_submits do
    for pid <- Process.list(),
        {:current_stacktrace, st} <- [Process.info(pid, :current_stacktrace)],
        Enum.any?(st, &match?({:ex_esdb_backend, :wait, 3, _}, &1)) do
      {pid, Enum.any?(st, &match?({ExESDB.Backend.Cluster, :submit_on_leader, _, _}, &1))}
    end
  end

  @doc """
  subscribe_to `name` here (the subscriber a process here), then read its
  checkpoint here at once through the Erlang API: {reply, read}.
  """
  def subscribe_to_and_read(store, name) do
    subscriber = spawn(fn -> Process.sleep(:infinity) end)
    reply = ExESDB.Subscriptions.subscribe_to(store, name, {:by_stream, "$all"}, subscriber)
    {:ok, h} = :ex_esdb.attach(store)
    {reply, :ex_esdb.get_checkpoint(h, name)}
  end

  @doc "delete_subscription here, then the checkpoint read here at once: {reply, read}."
  def delete_subscription_and_read(store, name) do
    reply = ExESDB.Subscriptions.delete_subscription(store, name)
    {:ok, h} = :ex_esdb.attach(store)
    {reply, :ex_esdb.get_checkpoint(h, name)}
  end

  @doc "Checkpoint `name`'s value after a barrier (nil when absent)."
  def checkpoint(store, name) do
    :ok = ExESDB.Cluster.barrier(store)
    {:ok, s} = ExESDB.Store.fetch(store)

    case s.backend.checkpoint_get(s, name) do
      {:ok, {_name, value, _definition, _updated}} -> value
      {:error, :subscription_not_found} -> nil
    end
  end

  defp watch_leading(store, to, led) do
    receive do
      :stop -> send(to, {:led, self(), Enum.uniq(led)})
    after
      0 ->
        case ExESDB.Cluster.info(store) do
          {:ok, %{leader?: true, term: t}} -> watch_leading(store, to, [t | led])
          _ -> watch_leading(store, to, led)
        end
    end
  end
end
