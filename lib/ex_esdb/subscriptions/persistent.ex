defmodule ExESDB.Subscriptions.Persistent do
  @moduledoc false
  # One named, durable subscription: joins the emitter, catches up from the
  # store to its end, then delivers live events — no gap, no duplicate — to
  # up to `concurrency_limit` subscribers, each with at most `buffer_size`
  # unacknowledged events. Memory stays bounded: live events are dropped
  # while catching up (the store has them), and a subscription whose
  # subscribers fall behind live events goes back to catching up. Acks move a checkpoint
  # that is written to the store; a new process under the same name
  # resumes after it. Monitors its subscribers (no links) and ends when the
  # last one goes, its unacked events to be delivered again.
  use GenServer, restart: :temporary

  alias ExESDB.EventCodec
  alias ExESDB.Subscriptions.Selector

  @page 1000
  # live events queued beyond this, the subscription reads from the store
  @max_pending 4 * @page
  @message_events 256

  def start_link({store, name, _, _, _} = args),
    do:
      GenServer.start_link(__MODULE__, args,
        name: via(store.store_id, name),
        spawn_opt: ExESDB.Subscriptions.spawn_opt()
      )

  def via(store_id, name),
    do: {:via, Registry, {ExESDB.Subscriptions.registry(store_id), name}}

  @doc "Acknowledge, for `subscriber`, an event as handed out or a cursor."
  def acknowledge(pid, subscriber, cursor) when is_integer(cursor),
    do: GenServer.cast(pid, {:ack, subscriber, cursor})

  def acknowledge(pid, subscriber, event), do: GenServer.cast(pid, {:ack_record, subscriber, event})

  # ---- init ---------------------------------------------------------

  @impl true
  def init({store, name, {type, selector}, subscriber, opts}) do
    # terminate/2 writes the last acknowledged checkpoint: it must run when
    # the supervisor shuts the subscription down too.
    Process.flag(:trap_exit, true)

    with {:ok, source, filter} <- Selector.resolve(type, selector),
         {:ok, member, live_from} <-
           store.backend.subscribe(store, self(), source, shape: :ranged) do
      key = if match?({:stream, _}, source), do: :event_number, else: :position
      definition = %{selector: {type, selector}, cursor: key}

      case resume_point(store, name, definition, source, opts[:start_from] || :origin, live_from) do
        {:ok, cursor, catching_up} ->
          start(
            store,
            name,
            source,
            filter,
            key,
            member,
            definition,
            cursor,
            catching_up,
            subscriber,
            opts
          )

        {:error, _} = error ->
          error
      end
      |> case do
        {:error, reason} ->
          store.backend.unsubscribe(store, member)
          {:stop, reason}

        started ->
          started
      end
    else
      {:error, reason} -> {:stop, reason}
    end
  end

  defp start(
         store,
         name,
         source,
         filter,
         key,
         member,
         definition,
         cursor,
         catching_up,
         subscriber,
         opts
       ) do
    state = %{
      store: store,
      name: name,
      source: source,
      filter: filter,
      key: key,
      member: member,
      definition: :erlang.term_to_binary(definition),
      buffer_size: opts[:buffer_size] || 1000,
      concurrency_limit: opts[:concurrency_limit] || 1,
      partition_by: opts[:partition_by],
      # how events look to subscribers, and which field of an acked one
      # is its cursor (for callers that map records, e.g. Commanded)
      transform: opts[:transform] || (& &1),
      ack_key: opts[:ack_key] || key,
      # delivery
      subscribers: %{},
      order: [],
      pending: :queue.new(),
      pending_n: 0,
      last_enqueued: cursor,
      # the highest cursor ever handed to a subscriber
      handed_max: 0,
      checkpoint: cursor,
      catching_up: catching_up,
      reading: false,
      partitions: %{},
      keys: %{}
    }

    # A checkpoint that cannot be written (a full disk, a limit) is an
    # answer to the caller, not a crash.
    case write_checkpoint(state, :sync) do
      :ok ->
        {:ok, add_subscriber(state, subscriber), {:continue, :catch_up}}

      {:error, _} = error ->
        error
    end
  end

  # Where the subscription resumes: after its stored checkpoint when one
  # exists (and was written for the same definition), else where
  # start_from puts it. The starting point is stored at once, so a
  # subscription that saw nothing yet still resumes from there.
  defp resume_point(store, name, definition, source, start_from, live_from) do
    case store.backend.checkpoint_get(store, name) do
      {:ok, {_, checkpoint, stored, _}} ->
        # a stored term: decoded with the store's checks (no funs, pids,
        # ports or references)
        case store.backend.decode_term(stored) do
          {:ok, ^definition} -> {:ok, checkpoint, true}
          {:ok, _} -> {:error, :subscription_definition_changed}
          {:error, _} = error -> error
        end

      {:error, :subscription_not_found} ->
        start_cursor(store, start_from, source, live_from)

      {:error, _} = error ->
        error
    end
  end

  # No checkpoint yet: where start_from puts the cursor, and whether there
  # is anything to read from the store first. :current is the stream's
  # version (or the store's last position) once joined: every later event
  # is delivered live.
  defp start_cursor(_store, :origin, _source, _live_from), do: {:ok, 0, true}
  defp start_cursor(_store, :current, :all, live_from), do: {:ok, live_from, false}
  defp start_cursor(_store, :current, {:type, _}, live_from), do: {:ok, live_from, false}

  defp start_cursor(store, :current, {:stream, stream_id}, _live_from) do
    case store.backend.stream_info(store, stream_id) do
      {:ok, version, _exists, _deleted} -> {:ok, version, false}
      {:error, _} = error -> error
    end
  end

  defp start_cursor(_store, n, _source, _) when is_integer(n) and n >= 0, do: {:ok, n, true}
  defp start_cursor(_store, other, _source, _), do: {:error, {:invalid_start_from, other}}

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
        {:reply, {:ok, self()}, state |> add_subscriber(pid) |> dispatch() |> resume_catch_up()}
    end
  end

  def handle_call(:unsubscribe, _from, state), do: {:stop, :normal, :ok, state}
  def handle_call(:checkpoint, _from, state), do: {:reply, state.checkpoint, state}

  @impl true
  def handle_cast({:ack, pid, cursor}, state),
    do: {:noreply, state |> ack(pid, cursor) |> dispatch() |> resume_catch_up()}

  def handle_cast({:ack_record, pid, record}, state),
    do: handle_cast({:ack, pid, Map.fetch!(record, state.ack_key)}, state)

  # ---- catch-up and live events ---------------------------------------

  @impl true
  def handle_continue(:catch_up, state), do: {:noreply, catch_up(state)}

  @impl true
  def handle_info(:catch_up, state), do: {:noreply, catch_up(%{state | reading: false})}

  # While catching up, live events are dropped: a delivery comes after its
  # commit, so an event dropped here was committed before the next read
  # starts, and the catch-up only ends with a read that reached the store's
  # end.
  def handle_info({:events, _records, _since}, %{catching_up: true} = state),
    do: {:noreply, state}

  # A delivery must continue from what was seen last (`last_enqueued`):
  # $all by position and a stream by version, one after the other; an
  # event type's events are sparse, so its delivery says since which
  # position every commit reached it. Anything else means events this
  # process never got (another OS process wrote them, or a fan-out was
  # lost): they are read from the store.
  def handle_info({:events, records, since}, state) do
    if continues?(records, since, state),
      do: {:noreply, live(records, state)},
      else: {:noreply, gap(state)}
  end

  def handle_info({:DOWN, ref, :process, pid, _}, state) do
    case state.subscribers do
      %{^pid => %{ref: ^ref}} ->
        state = remove_subscriber(state, pid)

        if state.subscribers == %{},
          do: {:stop, :normal, state},
          else: {:noreply, state |> dispatch() |> resume_catch_up()}

      _ ->
        {:noreply, state}
    end
  end

  # replies to asynchronous checkpoint writes
  def handle_info({ref, _reply}, state) when is_reference(ref), do: {:noreply, state}

  # Exit signals, trapped only so that terminate/2 runs (the parent's are
  # GenServer's own): from anyone else they act as they would untrapped,
  # :normal ignored, any other reason stops it (Commanded stops a
  # subscription with Process.exit(pid, :shutdown)).
  def handle_info({:EXIT, _from, :normal}, state), do: {:noreply, state}
  def handle_info({:EXIT, _from, reason}, state), do: {:stop, reason, state}

  @impl true
  def terminate(_reason, state) do
    state.store.backend.unsubscribe(state.store, state.member)
    # The last acknowledged position is what a successor resumes from.
    write_checkpoint(state, :sync)
  end

  defp continues?(_records, since, %{source: {:type, _}} = state),
    do: since <= state.last_enqueued + 1

  defp continues?(records, _since, state) do
    case Enum.drop_while(records, &(cursor(&1, state) <= state.last_enqueued)) do
      [] -> true
      [first | _] -> cursor(first, state) == state.last_enqueued + 1
    end
  end

  defp live(records, state) do
    records = EventCodec.finish(records, state.store)
    state |> enqueue(records) |> shed() |> dispatch() |> resume_catch_up()
  end

  defp gap(state), do: resume_catch_up(%{state | catching_up: true})

  defp catch_up(%{catching_up: false} = state), do: dispatch(state)

  defp catch_up(state) do
    if state.pending_n > 2 * @page do
      # enough queued; read more once subscribers have taken some
      dispatch(state)
    else
      from = state.last_enqueued + 1

      case state.store.backend.read(state.store, state.source, from, @page, :forward) do
        {:ok, records, next} ->
          state = enqueue(state, EventCodec.finish(records, state.store))

          # Only :eof is the end (then live events from here on): a page
          # the byte budget cut short is not.
          if next == :eof,
            do: %{state | catching_up: false} |> dispatch(),
            else: state |> dispatch() |> resume_catch_up()

        {:error, :stream_not_found} ->
          %{state | catching_up: false} |> dispatch()

        {:error, reason} ->
          exit({:catch_up_failed, reason})
      end
    end
  end

  # Read on while catching up and the queue has room; one read in flight.
  defp resume_catch_up(%{catching_up: true, reading: false} = state) do
    if state.pending_n <= 2 * @page do
      send(self(), :catch_up)
      %{state | reading: true}
    else
      state
    end
  end

  defp resume_catch_up(state), do: state

  # Subscribers that fall behind live events: keep the oldest queued, drop
  # the rest and read them from the store again when there is room. The
  # cut is never below an event already handed out (with partitions or
  # after a subscriber went, queued events can sit below those), so what
  # is read again was neither handed out nor kept.
  defp shed(%{pending_n: n} = state) when n <= @max_pending, do: state

  defp shed(state) do
    queued = :queue.to_list(state.pending)
    cut = max(cursor(Enum.at(queued, 2 * @page - 1), state), state.handed_max)
    {kept, dropped} = Enum.split_while(queued, &(cursor(&1, state) <= cut))

    %{
      state
      | pending: :queue.from_list(kept),
        pending_n: length(kept),
        last_enqueued: cut,
        keys: Map.drop(state.keys, Enum.map(dropped, &cursor(&1, state))),
        catching_up: true
    }
  end

  defp cursor(record, state), do: Map.fetch!(record, state.key)

  # Queue events past what is queued already (the no-duplicate rule) that
  # pass the filter. Records come in cursor order.
  defp enqueue(state, []), do: state

  defp enqueue(state, records) do
    fresh = Enum.drop_while(records, &(cursor(&1, state) <= state.last_enqueued))

    case fresh do
      [] ->
        state

      _ ->
        kept =
          if state.filter == nil,
            do: fresh,
            else: Enum.filter(fresh, &Selector.match?(state.filter, &1))

        %{
          state
          | pending: :queue.join(state.pending, :queue.from_list(kept)),
            pending_n: state.pending_n + length(kept),
            last_enqueued: cursor(List.last(fresh), state),
            keys: partition_keys(state, kept)
        }
    end
  end

  # partition_by runs once per event, when it is queued: a caller's
  # function may be costly (Commanded's decodes the event), and a blocked
  # event is looked at again on every dispatch.
  defp partition_keys(%{partition_by: nil} = state, _records), do: state.keys

  defp partition_keys(state, records) do
    Enum.reduce(records, state.keys, &Map.put(&2, cursor(&1, state), state.partition_by.(&1)))
  end

  # ---- subscribers and delivery ----------------------------------------

  defp add_subscriber(state, pid) do
    ref = Process.monitor(pid)
    send(pid, {:subscribed, self()})
    # `last`: the newest cursor handed out; while events are handed out in
    # rising order (`sorted`), the queue's head is its oldest event.
    sub = %{ref: ref, in_flight: :queue.new(), count: 0, last: nil, sorted: true}
    %{state | subscribers: Map.put(state.subscribers, pid, sub), order: state.order ++ [pid]}
  end

  # A subscriber that went: its unacked events are delivered again, before
  # anything still pending, in order.
  defp remove_subscriber(state, pid) do
    {sub, subscribers} = Map.pop(state.subscribers, pid)
    back = sub.in_flight |> :queue.to_list() |> Enum.sort_by(&cursor(&1, state))
    pending = merge(back, :queue.to_list(state.pending), state)
    partitions = Map.reject(state.partitions, fn {_k, owner} -> owner == pid end)

    %{
      state
      | subscribers: subscribers,
        order: List.delete(state.order, pid),
        pending: :queue.from_list(pending),
        pending_n: state.pending_n + sub.count,
        partitions: partitions
    }
  end

  defp merge([], b, _state), do: b
  defp merge(a, [], _state), do: a

  defp merge([x | xs] = a, [y | ys] = b, state) do
    if cursor(x, state) <= cursor(y, state),
      do: [x | merge(xs, b, state)],
      else: [y | merge(a, ys, state)]
  end

  defp dispatch(%{subscribers: subs} = state) when subs == %{}, do: state
  defp dispatch(%{pending_n: 0} = state), do: state
  defp dispatch(%{partition_by: nil} = state), do: dispatch_batches(state)
  defp dispatch(state), do: dispatch_partitions(state)

  # No partitions: give the subscriber with the most room its share of the
  # next events as one batch, and so on while there is room.
  defp dispatch_batches(state) do
    case Enum.max_by(state.order, &(state.buffer_size - state.subscribers[&1].count)) do
      pid ->
        room = state.buffer_size - state.subscribers[pid].count

        if room <= 0 or state.pending_n == 0 do
          state
        else
          # an even share for each subscriber with room
          with_room = Enum.count(state.order, &(state.subscribers[&1].count < state.buffer_size))
          k = Enum.min([room, state.pending_n, div(state.pending_n + with_room - 1, with_room)])
          {taken, rest} = :queue.split(k, state.pending)
          sub = state.subscribers[pid]
          deliver(pid, :queue.to_list(taken), state)

          sub = hand_out(sub, taken, k, state)
          {:value, last} = :queue.peek_r(taken)

          dispatch_batches(%{
            state
            | subscribers: Map.put(state.subscribers, pid, sub),
              pending: rest,
              pending_n: state.pending_n - k,
              handed_max: max(state.handed_max, cursor(last, state))
          })
        end
    end
  end

  # With partition_by: walk the pending events in order; an event goes to
  # the emptiest subscriber with room unless its partition already has an
  # unacked event, which keeps each partition in order, one at a time.
  defp dispatch_partitions(state) do
    {kept, state, batches} =
      state.pending
      |> :queue.to_list()
      |> Enum.reduce({[], state, %{}}, fn record, {kept, st, batches} ->
        key = Map.fetch!(st.keys, cursor(record, st))

        with false <- Map.has_key?(st.partitions, key),
             pid when pid != nil <- emptiest_with_room(st) do
          sub = st.subscribers[pid]
          sub = hand_out(sub, :queue.from_list([record]), 1, st)

          st = %{
            st
            | subscribers: Map.put(st.subscribers, pid, sub),
              partitions: Map.put(st.partitions, key, pid),
              pending_n: st.pending_n - 1,
              handed_max: max(st.handed_max, cursor(record, st))
          }

          {kept, st, Map.update(batches, pid, [record], &[record | &1])}
        else
          _ -> {[record | kept], st, batches}
        end
      end)

    Enum.each(batches, fn {pid, events} -> deliver(pid, Enum.reverse(events), state) end)

    %{state | pending: :queue.from_list(Enum.reverse(kept))}
  end

  # Events go out in messages of at most @message_events: the VM copies a
  # bigger message into memory of its own, mapped for it and unmapped after,
  # which made delivering records 2-4x slower.
  defp deliver(pid, events, state) do
    events
    |> Enum.chunk_every(@message_events)
    |> Enum.each(&send(pid, {:events, state.transform.(&1)}))
  end

  defp emptiest_with_room(state) do
    case Enum.filter(state.order, &(state.subscribers[&1].count < state.buffer_size)) do
      [] -> nil
      candidates -> Enum.min_by(candidates, &state.subscribers[&1].count)
    end
  end

  # Acking an event acks the subscriber's events at or before it too.
  defp ack(state, pid, acked) do
    case state.subscribers do
      %{^pid => sub} ->
        {done, rest} = take_acked(sub, acked, state)

        partitions =
          case state.partition_by do
            nil -> state.partitions
            _ -> Enum.reduce(done, state.partitions, &Map.delete(&2, state.keys[cursor(&1, state)]))
          end

        keys = Enum.reduce(done, state.keys, &Map.delete(&2, cursor(&1, state)))

        n = :queue.len(rest)

        sub =
          if n == 0,
            do: %{sub | in_flight: rest, count: 0, sorted: true, last: nil},
            else: %{sub | in_flight: rest, count: n}

        %{
          state
          | subscribers: Map.put(state.subscribers, pid, sub),
            partitions: partitions,
            keys: keys
        }
        |> advance_checkpoint()

      _ ->
        state
    end
  end

  defp hand_out(sub, events, k, state) do
    first = cursor(elem(:queue.peek(events), 1), state)
    last = cursor(elem(:queue.peek_r(events), 1), state)

    %{
      sub
      | in_flight: :queue.join(sub.in_flight, events),
        count: sub.count + k,
        sorted: sub.sorted and (sub.last == nil or first > sub.last),
        last: last
    }
  end

  # The events an ack covers (cursor at or below it) and the rest: from the
  # front while the queue is in order, by a full pass otherwise.
  # (an ack of the newest event handed out takes the whole queue)
  # (the acked events themselves matter only to release partitions)
  defp take_acked(%{sorted: true, last: last} = sub, acked, state) when last <= acked do
    done = if state.partition_by, do: :queue.to_list(sub.in_flight), else: []
    {done, :queue.new()}
  end

  defp take_acked(%{sorted: true} = sub, acked, state),
    do: drop_acked(sub.in_flight, acked, state, [])

  defp take_acked(sub, acked, state) do
    {done, rest} = Enum.split_with(:queue.to_list(sub.in_flight), &(cursor(&1, state) <= acked))
    {done, :queue.from_list(rest)}
  end

  defp drop_acked(queue, acked, state, done) do
    case :queue.peek(queue) do
      {:value, r} ->
        if cursor(r, state) <= acked,
          do: drop_acked(:queue.drop(queue), acked, state, [r | done]),
          else: {done, queue}

      :empty ->
        {done, queue}
    end
  end

  defp oldest_in_flight(%{count: 0}, _state), do: []

  defp oldest_in_flight(%{sorted: true} = sub, state),
    do: [cursor(elem(:queue.peek(sub.in_flight), 1), state)]

  defp oldest_in_flight(sub, state),
    do: [sub.in_flight |> :queue.to_list() |> Enum.map(&cursor(&1, state)) |> Enum.min()]

  # The checkpoint is the highest cursor with everything up to it acked:
  # just below the oldest event unacked or pending.
  defp advance_checkpoint(state) do
    oldest =
      [
        case :queue.peek(state.pending) do
          {:value, r} -> cursor(r, state)
          :empty -> nil
        end
        | Enum.flat_map(state.subscribers, fn {_, sub} ->
            oldest_in_flight(sub, state)
          end)
      ]
      |> Enum.reject(&is_nil/1)

    checkpoint =
      case oldest do
        [] -> state.last_enqueued
        list -> Enum.min(list) - 1
      end

    if checkpoint > state.checkpoint do
      state = %{state | checkpoint: checkpoint}
      write_checkpoint(state, :async)
      state
    else
      state
    end
  end

  # :async: the reply comes as {ref, reply} and is dropped (a later
  # write or the one in terminate/2 covers a failed one).
  defp write_checkpoint(state, mode) do
    command = {:checkpoint_put, state.name, state.checkpoint, state.definition}
    opts = if mode == :async, do: [async: true, ref: make_ref()], else: []
    state.store.backend.submit(state.store, command, opts)
  end
end
