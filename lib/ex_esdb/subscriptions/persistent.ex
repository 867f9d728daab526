defmodule ExESDB.Subscriptions.Persistent do
  @moduledoc false
  # One named, durable subscription: joins the emitter, catches up from the
  # store to the position the join returned, then delivers live events —
  # no gap, no duplicate — to up to `concurrency_limit` subscribers, each
  # with at most `buffer_size` unacknowledged events. Acks move a checkpoint
  # that is written to the store; a new process under the same name
  # resumes after it. Monitors its subscribers (no links) and ends when the
  # last one goes, its unacked events to be delivered again.
  use GenServer, restart: :temporary

  alias ExESDB.{EventCodec, EventRecord}
  alias ExESDB.Subscriptions.Selector

  @page 1000

  def start_link({store, name, _, _, _} = args),
    do: GenServer.start_link(__MODULE__, args, name: via(store.store_id, name))

  def via(store_id, name), do: {:via, Registry, {registry(store_id), name}}
  def registry(store_id), do: :"exesdb_registry_#{store_id}"

  # ---- init ---------------------------------------------------------

  @impl true
  def init({store, name, {type, selector}, subscriber, opts}) do
    with {:ok, source, filter} <- Selector.resolve(type, selector),
         decode = store.serializer == ExESDB.Serializer.Term,
         {:ok, member, live_from} <-
           :ex_esdb_nif.subscribe(store.handle, self(), source, {EventRecord, decode}) do
      key = if match?({:stream, _}, source), do: :event_number, else: :position
      definition = :erlang.term_to_binary(%{selector: {type, selector}, cursor: key})

      {cursor, catching_up} =
        case :ex_esdb_nif.checkpoint_get(store.handle, name) do
          {:ok, {_, checkpoint, _, _}} -> {checkpoint, true}
          {:error, :not_found} -> start_cursor(opts[:start_from] || :origin, key, live_from)
        end

      state = %{
        store: store,
        name: name,
        source: source,
        filter: filter,
        decode: decode,
        key: key,
        member: member,
        definition: definition,
        buffer_size: opts[:buffer_size] || 1000,
        concurrency_limit: opts[:concurrency_limit] || 1,
        partition_by: opts[:partition_by],
        # delivery
        subscribers: %{},
        order: [],
        pending: :gb_trees.empty(),
        unacked: :gb_sets.empty(),
        last_enqueued: cursor,
        checkpoint: cursor,
        catching_up: catching_up,
        live_from: live_from,
        live_buffer: [],
        partitions: %{}
      }

      :ok = write_checkpoint(state, :sync)
      state = add_subscriber(state, subscriber)
      {:ok, state, {:continue, :catch_up}}
    else
      {:error, reason} -> {:stop, reason}
    end
  end

  # No checkpoint yet: where start_from puts the cursor, and whether there
  # is anything to read from the store first.
  defp start_cursor(:origin, _key, _live_from), do: {0, true}
  defp start_cursor(:current, :position, live_from), do: {live_from, false}
  defp start_cursor(:current, :event_number, _), do: {:current, false}
  defp start_cursor(n, _key, _) when is_integer(n) and n >= 0, do: {n, true}

  # ---- API calls ----------------------------------------------------

  @impl true
  def handle_call({:subscribe, pid, _opts}, _from, state) do
    cond do
      Map.has_key?(state.subscribers, pid) ->
        {:reply, {:error, :subscription_already_exists}, state}

      state.concurrency_limit == 1 ->
        {:reply, {:error, :subscription_already_exists}, state}

      map_size(state.subscribers) >= state.concurrency_limit ->
        {:reply, {:error, :too_many_subscribers}, state}

      true ->
        {:reply, {:ok, self()}, state |> add_subscriber(pid) |> dispatch()}
    end
  end

  def handle_call(:unsubscribe, _from, state), do: {:stop, :normal, :ok, state}
  def handle_call(:checkpoint, _from, state), do: {:reply, state.checkpoint, state}

  @impl true
  def handle_cast({:ack, pid, cursor}, state),
    do: {:noreply, state |> ack(pid, cursor) |> dispatch()}

  def handle_cast({:ack_record, pid, record}, state),
    do: handle_cast({:ack, pid, Map.fetch!(record, state.key)}, state)

  # ---- catch-up and live events ---------------------------------------

  @impl true
  def handle_continue(:catch_up, state), do: {:noreply, catch_up(state)}

  @impl true
  def handle_info(:catch_up, state), do: {:noreply, catch_up(state)}

  def handle_info({:events, records}, state) do
    records = decode(records, state)

    state =
      if state.catching_up do
        # Events up to live_from are read from the store; keep the rest
        # for when the catch-up is done.
        later = Enum.filter(records, &(&1.position > state.live_from))
        %{state | live_buffer: Enum.reverse(later, state.live_buffer)}
      else
        enqueue(state, records)
      end

    {:noreply, dispatch(state)}
  end

  def handle_info({:DOWN, ref, :process, pid, _}, state) do
    case state.subscribers do
      %{^pid => %{ref: ^ref}} ->
        state = remove_subscriber(state, pid)
        if state.subscribers == %{}, do: {:stop, :normal, state}, else: {:noreply, dispatch(state)}

      _ ->
        {:noreply, state}
    end
  end

  # replies to asynchronous checkpoint writes
  def handle_info({ref, _reply}, state) when is_reference(ref), do: {:noreply, state}

  @impl true
  def terminate(_reason, state) do
    :ex_esdb_nif.unsubscribe(state.store.handle, state.member)
    # The last acknowledged position is what a successor resumes from.
    write_checkpoint(state, :sync)
  end

  defp catch_up(%{catching_up: false} = state), do: dispatch(state)

  defp catch_up(state) do
    if :gb_trees.size(state.pending) > 2 * @page do
      # enough queued; read more once subscribers have taken some
      dispatch(state)
    else
      from = if state.last_enqueued == :current, do: 1, else: state.last_enqueued + 1

      case :ex_esdb_nif.read_records(
             state.store.handle,
             state.source,
             from,
             @page,
             :forward,
             {EventRecord, state.decode}
           ) do
        {:ok, records} ->
          records = decode(records, state)
          {old, _} = Enum.split_with(records, &(&1.position <= state.live_from))
          state = enqueue(state, old)

          if length(records) < @page or length(old) < length(records) do
            live = Enum.reverse(state.live_buffer)
            %{state | catching_up: false, live_buffer: []} |> enqueue(live) |> dispatch()
          else
            send(self(), :catch_up)
            dispatch(state)
          end

        {:error, :stream_not_found} ->
          %{state | catching_up: false} |> enqueue(Enum.reverse(state.live_buffer)) |> dispatch()

        {:error, reason} ->
          exit({:catch_up_failed, reason})
      end
    end
  end

  defp decode(records, %{decode: true}), do: records
  defp decode(records, state), do: EventCodec.deserialize(records, state.store.serializer)

  # Add events past what is queued already (the no-duplicate rule) that
  # pass the filter.
  defp enqueue(state, records) do
    Enum.reduce(records, state, fn r, st ->
      c = Map.fetch!(r, st.key)

      cond do
        st.last_enqueued != :current and c <= st.last_enqueued ->
          st

        not Selector.match?(st.filter, r) ->
          %{st | last_enqueued: c}

        true ->
          %{st | pending: :gb_trees.insert(c, r, st.pending), last_enqueued: c}
      end
    end)
  end

  # ---- subscribers and delivery ----------------------------------------

  defp add_subscriber(state, pid) do
    ref = Process.monitor(pid)
    send(pid, {:subscribed, self()})
    sub = %{ref: ref, in_flight: :queue.new(), count: 0}
    %{state | subscribers: Map.put(state.subscribers, pid, sub), order: state.order ++ [pid]}
  end

  # A subscriber that went: its unacked events are delivered again, first.
  defp remove_subscriber(state, pid) do
    {sub, subscribers} = Map.pop(state.subscribers, pid)

    in_flight = :queue.to_list(sub.in_flight)

    pending =
      Enum.reduce(in_flight, state.pending, fn r, p ->
        :gb_trees.enter(Map.fetch!(r, state.key), r, p)
      end)

    unacked =
      Enum.reduce(in_flight, state.unacked, &:gb_sets.delete_any(Map.fetch!(&1, state.key), &2))

    partitions = Map.reject(state.partitions, fn {_k, owner} -> owner == pid end)

    %{
      state
      | subscribers: subscribers,
        order: List.delete(state.order, pid),
        pending: pending,
        unacked: unacked,
        partitions: partitions
    }
  end

  defp dispatch(state) do
    {state, batches} = assign(:gb_trees.iterator(state.pending), state, %{})

    Enum.each(batches, fn {pid, events} -> send(pid, {:events, Enum.reverse(events)}) end)
    state
  end

  # Walk pending events in order, giving each to a subscriber with room
  # (and, with partition_by, the subscriber that holds its partition, one
  # unacked event per partition).
  defp assign(iter, state, batches) do
    if state.subscribers == %{} or not room?(state) do
      {state, batches}
    else
      case :gb_trees.next(iter) do
        :none ->
          {state, batches}

        {cursor, record, iter} ->
          case pick(state, record) do
            nil ->
              assign(iter, state, batches)

            {pid, partition} ->
              state = deliver(state, pid, cursor, record, partition)
              assign(iter, state, Map.update(batches, pid, [record], &[record | &1]))
          end
      end
    end
  end

  defp room?(state),
    do: Enum.any?(state.subscribers, fn {_, s} -> s.count < state.buffer_size end)

  defp pick(%{partition_by: nil} = state, _record) do
    case Enum.filter(state.order, &(state.subscribers[&1].count < state.buffer_size)) do
      [] -> nil
      candidates -> {Enum.min_by(candidates, &state.subscribers[&1].count), nil}
    end
  end

  defp pick(state, record) do
    key = state.partition_by.(record)

    case state.partitions do
      %{^key => _owner} ->
        nil

      _ ->
        case pick(%{state | partition_by: nil}, record) do
          nil -> nil
          {pid, nil} -> {pid, key}
        end
    end
  end

  defp deliver(state, pid, cursor, record, partition) do
    subscribers =
      Map.update!(state.subscribers, pid, fn s ->
        %{s | in_flight: :queue.in(record, s.in_flight), count: s.count + 1}
      end)

    partitions =
      if partition == nil, do: state.partitions, else: Map.put(state.partitions, partition, pid)

    %{
      state
      | subscribers: subscribers,
        pending: :gb_trees.delete(cursor, state.pending),
        unacked: :gb_sets.add(cursor, state.unacked),
        partitions: partitions
    }
  end

  # Acking an event acks the subscriber's events before it too.
  defp ack(state, pid, cursor) do
    case state.subscribers do
      %{^pid => sub} ->
        {acked, rest, left} = take_acked(sub.in_flight, state.key, cursor, [])

        unacked =
          Enum.reduce(acked, state.unacked, &:gb_sets.delete_any(Map.fetch!(&1, state.key), &2))

        partitions =
          case state.partition_by do
            nil -> state.partitions
            f -> Enum.reduce(acked, state.partitions, &Map.delete(&2, f.(&1)))
          end

        state = %{
          state
          | subscribers: Map.put(state.subscribers, pid, %{sub | in_flight: rest, count: left}),
            unacked: unacked,
            partitions: partitions
        }

        advance_checkpoint(state)

      _ ->
        state
    end
  end

  # Events of a subscriber's in-flight queue (in cursor order) up to cursor.
  defp take_acked(queue, key, cursor, acked) do
    case :queue.peek(queue) do
      {:value, r} ->
        if Map.fetch!(r, key) <= cursor,
          do: take_acked(:queue.drop(queue), key, cursor, [r | acked]),
          else: {acked, queue, :queue.len(queue)}

      :empty ->
        {acked, queue, 0}
    end
  end

  # The checkpoint is the highest cursor with everything up to it acked:
  # just below the oldest event still unacked or pending.
  defp advance_checkpoint(state) do
    oldest =
      [
        if(:gb_sets.is_empty(state.unacked), do: nil, else: :gb_sets.smallest(state.unacked)),
        if(:gb_trees.is_empty(state.pending),
          do: nil,
          else: elem(:gb_trees.smallest(state.pending), 0)
        )
      ]
      |> Enum.reject(&is_nil/1)

    checkpoint =
      case oldest do
        [] -> state.last_enqueued
        list -> Enum.min(list) - 1
      end

    if is_integer(checkpoint) and (state.checkpoint == :current or checkpoint > state.checkpoint) do
      state = %{state | checkpoint: checkpoint}
      write_checkpoint(state, :async)
      state
    else
      state
    end
  end

  defp write_checkpoint(%{checkpoint: :current}, _mode), do: :ok

  defp write_checkpoint(state, mode) do
    ref = make_ref()
    h = state.store.handle

    case :ex_esdb_nif.checkpoint_put(h, ref, state.name, state.checkpoint, state.definition) do
      :ok when mode == :async ->
        :ok

      :ok ->
        receive do
          {^ref, reply} -> reply
        after
          state.store.timeout -> {:error, :timeout}
        end

      error ->
        error
    end
  end
end
