defmodule ExESDB.Subscriptions.Persistent.State do
  @moduledoc false
  # What a persistent subscription knows, without a store, a process or a
  # message: the queue of events not yet handed out, the events each
  # subscriber holds unacknowledged, partitions, the checkpoint, whether
  # it reads from the store (catching up) or takes live deliveries, and
  # whether a live delivery continues from what it saw (gap detection).
  # ExESDB.Subscriptions.Persistent is the process around it: it joins the
  # emitter, reads pages, writes checkpoints and sends what dispatch/1
  # hands out.
  #
  # What it keeps of an event handed out (`hold`): the record (`:records`)
  # or only its cursor (`:cursors`). With cursors, a subscription holds no
  # copy of what its subscribers hold unacked (up to buffer_size each,
  # which its garbage collections copied again and again); a subscriber
  # that goes leaves cursors to read again (rereads/1), which the process
  # reads from the store and puts back (put_back/2) before anything else
  # is handed out.

  alias ExESDB.Subscriptions.Selector

  # events read from the store at a time
  @page 1000
  # live events queued beyond this, the subscription reads from the store
  @max_pending 4 * @page
  # events in one message to a subscriber (the process cuts what
  # dispatch/1 hands out into messages of this many)
  @message_events 256

  defstruct [
    # :position ($all, a type) or :event_number (a stream): an event's cursor
    :key,
    # :all, {:stream, id} or {:type, type}
    :source,
    :filter,
    :partition_by,
    buffer_size: 1000,
    concurrency_limit: 1,
    subscribers: %{},
    order: [],
    pending: :queue.new(),
    pending_n: 0,
    # the cursor of the last event queued (or known to be filtered out)
    last_enqueued: 0,
    # the highest cursor ever handed to a subscriber
    handed_max: 0,
    checkpoint: 0,
    catching_up: true,
    # a read of the store is due (the process sent itself :catch_up)
    reading: false,
    # partition key => the subscriber holding its unacked event
    partitions: %{},
    # cursor => partition key, for queued and unacked events
    keys: %{},
    # :records or :cursors: what is kept of an event handed out
    hold: :records,
    # cursors of events handed out to a subscriber that went, to be read
    # again (only with hold: :cursors), in order
    reread: []
  ]

  @type t :: %__MODULE__{}
  @type delivery :: {pid(), [map()]}

  @doc "Events read from the store at a time."
  def page, do: @page

  @doc "Events in one message to a subscriber, at most."
  def message_events, do: @message_events

  @doc """
  A subscription resuming after `cursor`. `catching_up`: whether the
  store may hold events after it (else it takes live deliveries at once).
  Options: `buffer_size`, `concurrency_limit`, `partition_by`, `filter`,
  `hold` (`:records`, the default, or `:cursors`).
  """
  @spec new(
          :all | {:stream, String.t()} | {:type, String.t()},
          non_neg_integer(),
          boolean(),
          keyword()
        ) ::
          t()
  def new(source, cursor, catching_up, opts \\ []) do
    %__MODULE__{
      key: if(match?({:stream, _}, source), do: :event_number, else: :position),
      source: source,
      filter: opts[:filter],
      partition_by: opts[:partition_by],
      buffer_size: opts[:buffer_size] || 1000,
      concurrency_limit: opts[:concurrency_limit] || 1,
      last_enqueued: cursor,
      checkpoint: cursor,
      catching_up: catching_up,
      hold: opts[:hold] || :records
    }
  end

  # ---- subscribers ------------------------------------------------------

  @doc "Whether `pid` may join: `:ok` or the reason it may not."
  @spec may_join(t(), pid()) :: :ok | {:error, atom()}
  def may_join(state, pid) do
    cond do
      Map.has_key?(state.subscribers, pid) -> {:error, :subscription_already_exists}
      state.concurrency_limit == 1 -> {:error, :subscription_already_exists}
      map_size(state.subscribers) >= state.concurrency_limit -> {:error, :too_many_subscribers}
      true -> :ok
    end
  end

  @doc "Add a subscriber (`ref`: the process's monitor of it)."
  @spec add_subscriber(t(), pid(), reference()) :: t()
  def add_subscriber(state, pid, ref) do
    # `in_flight`: the events it holds unacked, as a queue of the batches
    # they were handed out in (`{first, last, n, events}`, each batch in
    # cursor order), so an ack drops whole batches instead of walking
    # event by event. With hold: :cursors, `events` is nil when the batch
    # is every cursor from first to last, else the list of its cursors. `last`: the newest cursor handed out; while events
    # are handed out in rising order (`sorted`), the first batch holds the
    # oldest event.
    sub = %{ref: ref, in_flight: :queue.new(), count: 0, last: nil, sorted: true}
    %{state | subscribers: Map.put(state.subscribers, pid, sub), order: state.order ++ [pid]}
  end

  @doc "The monitor reference a subscriber was added with, or nil."
  @spec subscriber_ref(t(), pid()) :: reference() | nil
  def subscriber_ref(state, pid) do
    case state.subscribers do
      %{^pid => %{ref: ref}} -> ref
      _ -> nil
    end
  end

  @doc """
  A subscriber that went: its unacked events are delivered again, before
  anything still pending, in order. With hold: :cursors they are first
  to be read again (`rereads/1`, then `put_back/2`).
  """
  @spec remove_subscriber(t(), pid()) :: t()
  def remove_subscriber(state, pid) do
    {sub, subscribers} = Map.pop(state.subscribers, pid)
    partitions = Map.reject(state.partitions, fn {_k, owner} -> owner == pid end)

    state = %{
      state
      | subscribers: subscribers,
        order: List.delete(state.order, pid),
        pending_n: state.pending_n + sub.count,
        partitions: partitions
    }

    back = sub.in_flight |> held() |> Enum.sort_by(&held_cursor(&1, state))

    case state.hold do
      :cursors ->
        %{state | reread: :lists.umerge(back, state.reread)}

      :records ->
        %{state | pending: :queue.from_list(merge(back, :queue.to_list(state.pending), state))}
    end
  end

  @doc "Cursors of events to read again from the store (hold: :cursors), in order."
  @spec rereads(t()) :: [non_neg_integer()]
  def rereads(state), do: state.reread

  @doc """
  The records of `rereads/1`, read again (in cursor order): they go before
  anything still pending, in order. Nothing is handed out until then.
  """
  @spec put_back(t(), [map()]) :: t()
  def put_back(state, records) do
    back = Enum.sort_by(records, &cursor(&1, state))

    %{
      state
      | pending: :queue.from_list(merge(back, :queue.to_list(state.pending), state)),
        pending_n: state.pending_n - length(state.reread) + length(back),
        reread: []
    }
  end

  defp merge([], b, _state), do: b
  defp merge(a, [], _state), do: a

  defp merge([x | xs] = a, [y | ys] = b, state) do
    if cursor(x, state) <= cursor(y, state),
      do: [x | merge(xs, b, state)],
      else: [y | merge(a, ys, state)]
  end

  # ---- catch-up and live events -----------------------------------------

  @doc "Whether enough is queued that the next read waits for subscribers to take some."
  @spec queue_full?(t()) :: boolean()
  def queue_full?(state), do: state.pending_n > 2 * @page

  @doc "Where the next read of the store starts."
  @spec read_from(t()) :: pos_integer()
  def read_from(state), do: state.last_enqueued + 1

  @doc """
  A page read from the store, and where the next starts: only `:eof` is
  the end (then live deliveries from here on); a page the byte budget cut
  short is not.
  """
  @spec page_read(t(), [map()], :eof | pos_integer()) :: t()
  def page_read(state, records, next) do
    state = enqueue(state, records)
    if next == :eof, do: %{state | catching_up: false}, else: state
  end

  @doc "The source does not exist (yet): nothing to read, live from here."
  @spec nothing_to_read(t()) :: t()
  def nothing_to_read(state), do: %{state | catching_up: false}

  @doc """
  Whether to read on: catching up, no read due already and the queue has
  room. The caller reads when `true`; `reading` is set until `read_done/1`.
  """
  @spec resume_catch_up(t()) :: {t(), boolean()}
  def resume_catch_up(%{catching_up: true, reading: false} = state) do
    if state.pending_n <= 2 * @page,
      do: {%{state | reading: true}, true},
      else: {state, false}
  end

  def resume_catch_up(state), do: {state, false}

  @doc "The due read is being done."
  @spec read_done(t()) :: t()
  def read_done(state), do: %{state | reading: false}

  @doc """
  A live delivery (`{:events, records, since}` of the emitter). While
  catching up it is dropped: a delivery comes after its commit, so an
  event dropped here was committed before the next read starts, and the
  catch-up only ends with a read that reached the store's end. A delivery
  must continue from what was seen last (`last_enqueued`): `$all` by
  position and a stream by version, one after the other; an event type's
  events are sparse, so its delivery says since which position every
  commit reached it. Anything else means events this subscription never
  got (another OS process wrote them, or a fan-out was lost): `:gap`, and
  it reads them from the store.

  `prepare` turns delivered records into the ones queued (the process
  deserializes them); it runs only on a delivery that is taken.
  """
  @spec live(t(), [map()], non_neg_integer(), ([map()] -> [map()])) ::
          {:ok | :dropped | :gap, t()}
  def live(state, records, since, prepare \\ & &1)

  def live(%{catching_up: true} = state, _records, _since, _prepare), do: {:dropped, state}

  def live(state, records, since, prepare) do
    if continues?(records, since, state),
      do: {:ok, state |> enqueue(prepare.(records)) |> shed()},
      else: {:gap, %{state | catching_up: true}}
  end

  defp continues?(_records, since, %{source: {:type, _}} = state),
    do: since <= state.last_enqueued + 1

  defp continues?(records, _since, state) do
    case fresh(records, state) do
      [] -> true
      [first | _] -> cursor(first, state) == state.last_enqueued + 1
    end
  end

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

  @doc "An event's cursor: its stream version for a stream, else its position."
  @spec cursor(map(), t()) :: non_neg_integer()
  def cursor(record, state), do: Map.fetch!(record, state.key)

  # Queue events past what is queued already (the no-duplicate rule) that
  # pass the filter. Records come in cursor order.
  defp enqueue(state, []), do: state

  defp enqueue(state, records) do
    case fresh(records, state) do
      [] ->
        state

      fresh ->
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

  # The records past what is queued already (they come in cursor order:
  # when the first is past it, all are, without a look at each).
  defp fresh([], _state), do: []

  defp fresh([first | _] = records, state) do
    if cursor(first, state) > state.last_enqueued,
      do: records,
      else: Enum.drop_while(records, &(cursor(&1, state) <= state.last_enqueued))
  end

  # partition_by runs once per event, when it is queued: a caller's
  # function may be costly (Commanded's decodes the event), and a blocked
  # event is looked at again on every dispatch.
  defp partition_keys(%{partition_by: nil} = state, _records), do: state.keys

  defp partition_keys(state, records) do
    Enum.reduce(records, state.keys, &Map.put(&2, cursor(&1, state), state.partition_by.(&1)))
  end

  # ---- handing out --------------------------------------------------------

  @doc """
  Hand out queued events to subscribers with room: the deliveries to
  make, in order, as `{pid, events}`.
  """
  @spec dispatch(t()) :: {t(), [delivery()]}
  def dispatch(%{subscribers: subs} = state) when subs == %{}, do: {state, []}
  def dispatch(%{reread: [_ | _]} = state), do: {state, []}
  def dispatch(%{pending_n: 0} = state), do: {state, []}
  def dispatch(%{partition_by: nil} = state), do: dispatch_batches(state, [])
  def dispatch(state), do: dispatch_partitions(state)

  # No partitions: give the subscriber with the most room its share of the
  # next events as one batch, and so on while there is room.
  defp dispatch_batches(state, out) do
    pid = Enum.max_by(state.order, &(state.buffer_size - state.subscribers[&1].count))
    room = state.buffer_size - state.subscribers[pid].count

    if room <= 0 or state.pending_n == 0 do
      {state, Enum.reverse(out)}
    else
      # an even share for each subscriber with room
      with_room = Enum.count(state.order, &(state.subscribers[&1].count < state.buffer_size))
      k = Enum.min([room, state.pending_n, div(state.pending_n + with_room - 1, with_room)])
      {taken, rest} = :queue.split(k, state.pending)
      events = :queue.to_list(taken)
      sub = hand_out(state.subscribers[pid], events, k, state)
      last = sub.last

      dispatch_batches(
        %{
          state
          | subscribers: Map.put(state.subscribers, pid, sub),
            pending: rest,
            pending_n: state.pending_n - k,
            handed_max: max(state.handed_max, last)
        },
        [{pid, events} | out]
      )
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
          sub = hand_out(st.subscribers[pid], [record], 1, st)

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

    deliveries = Enum.map(batches, fn {pid, events} -> {pid, Enum.reverse(events)} end)
    {%{state | pending: :queue.from_list(Enum.reverse(kept))}, deliveries}
  end

  defp emptiest_with_room(state) do
    case Enum.filter(state.order, &(state.subscribers[&1].count < state.buffer_size)) do
      [] -> nil
      candidates -> Enum.min_by(candidates, &state.subscribers[&1].count)
    end
  end

  # `events`: k events in cursor order, handed out together; held in
  # batches of @message_events, as the process sends them, so that an ack
  # of a message's last event drops whole batches.
  defp hand_out(sub, events, k, state) do
    first = cursor(hd(events), state)
    last = cursor(List.last(events), state)

    %{
      sub
      | in_flight: hold(sub.in_flight, events, k, state),
        count: sub.count + k,
        sorted: sub.sorted and (sub.last == nil or first > sub.last),
        last: last
    }
  end

  # ---- acks and the checkpoint --------------------------------------------

  @doc """
  `pid` acknowledges `acked` (a cursor) and its events at or before it;
  the checkpoint moves to just below the oldest event unacked or pending.
  An ack from a process that is not a subscriber is ignored.
  """
  @spec ack(t(), pid(), non_neg_integer()) :: t()
  def ack(state, pid, acked) do
    case state.subscribers do
      %{^pid => sub} ->
        {done, rest, n} = take_acked(sub, acked, state)

        # (keys and partitions are only kept with partition_by)
        {partitions, keys} =
          case state.partition_by do
            nil ->
              {state.partitions, state.keys}

            _ ->
              {Enum.reduce(done, state.partitions, &Map.delete(&2, state.keys[&1])),
               Enum.reduce(done, state.keys, &Map.delete(&2, &1))}
          end

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

  # The cursors an ack covers (at or below it), the batches left and how
  # many events they hold: whole batches from the front while they are
  # in order, by a full pass otherwise. An ack of a cursor the subscriber
  # does not hold (repeated, or stale) covers nothing: what it holds
  # below that cursor may have been handed out after it.
  # (an ack of the newest event handed out takes them all)
  # (the acked cursors themselves matter only to release partitions)
  defp take_acked(%{sorted: true, last: acked} = sub, acked, state) do
    done = if state.partition_by, do: held_cursors(sub.in_flight, state), else: []
    {done, :queue.new(), 0}
  end

  defp take_acked(%{sorted: true} = sub, acked, state) do
    if holds?(sub.in_flight, acked, state),
      do: drop_acked(sub.in_flight, sub.count, acked, state, state.partition_by != nil, []),
      else: {[], sub.in_flight, sub.count}
  end

  # Held out of cursor order (a partition's event held back, or a gone
  # subscriber's events handed out again): an ack of an event it holds
  # covers what was handed out up to it, not a lower cursor handed out
  # after it, which the subscriber may not have seen yet.
  defp take_acked(sub, acked, state) do
    held = held(sub.in_flight)

    {done, rest} =
      case Enum.find_index(held, &(held_cursor(&1, state) == acked)) do
        nil -> {[], held}
        i -> Enum.split(held, i + 1)
      end

    {Enum.map(done, &held_cursor(&1, state)), batches(rest, state), length(rest)}
  end

  # Whether batches in cursor order hold `acked`: a range batch every
  # cursor in it, a batch of events their cursors.
  defp holds?(queue, acked, state) do
    case :queue.out(queue) do
      {{:value, {first, _, _, _}}, _} when first > acked -> false
      {{:value, {_, last, _, _}}, rest} when last < acked -> holds?(rest, acked, state)
      {{:value, {_, _, _, nil}}, _} -> true
      {{:value, {_, _, _, events}}, _} -> Enum.any?(events, &(held_cursor(&1, state) == acked))
      {:empty, _} -> false
    end
  end

  # (`keep?`: whether the acked cursors are wanted, for partitions)
  defp drop_acked(queue, n, acked, state, keep?, done) do
    case :queue.out(queue) do
      {{:value, {first, _, _, _}}, _} when first > acked ->
        {done, queue, n}

      {{:value, {_, last, k, _} = batch}, rest} when last <= acked ->
        done = if keep?, do: Enum.reverse(batch_cursors(batch, state), done), else: done
        drop_acked(rest, n - k, acked, state, keep?, done)

      # the ack falls inside this batch: its acked front goes
      {{:value, {first, last, k, nil}}, rest} ->
        done = if keep?, do: Enum.reverse(Enum.to_list(first..acked), done), else: done
        {done, :queue.in_r({acked + 1, last, last - acked, nil}, rest), n - (k - (last - acked))}

      {{:value, {_, last, k, events}}, rest} ->
        {acked_events, left} = Enum.split_while(events, &(held_cursor(&1, state) <= acked))
        taken = length(acked_events)

        done =
          if keep?,
            do: Enum.reverse(Enum.map(acked_events, &held_cursor(&1, state)), done),
            else: done

        batch = {held_cursor(hd(left), state), last, k - taken, left}
        {done, :queue.in_r(batch, rest), n - taken}

      {:empty, _} ->
        {done, queue, n}
    end
  end

  defp hold(in_flight, events, k, state) when k <= @message_events do
    first = cursor(hd(events), state)
    last = cursor(List.last(events), state)

    kept =
      cond do
        state.hold == :records -> events
        last - first + 1 == k -> nil
        true -> Enum.map(events, &cursor(&1, state))
      end

    :queue.in({first, last, k, kept}, in_flight)
  end

  defp hold(in_flight, events, k, state) do
    {batch, rest} = :lists.split(@message_events, events)
    in_flight |> hold(batch, @message_events, state) |> hold(rest, k - @message_events, state)
  end

  # What is held (records, or cursors with hold: :cursors), in the order
  # it was handed out.
  defp held(in_flight),
    do: in_flight |> :queue.to_list() |> Enum.flat_map(&batch_events/1)

  defp held_cursors(in_flight, state), do: Enum.map(held(in_flight), &held_cursor(&1, state))

  defp batch_events({first, last, _, nil}), do: Enum.to_list(first..last)
  defp batch_events({_, _, _, events}), do: events

  defp batch_cursors(batch, state), do: Enum.map(batch_events(batch), &held_cursor(&1, state))

  defp held_cursor(c, _state) when is_integer(c), do: c
  defp held_cursor(record, state), do: cursor(record, state)

  # What is held out of order, as one batch (only `held/1` reads it).
  defp batches([], _state), do: :queue.new()

  defp batches(events, state) do
    first = held_cursor(hd(events), state)
    last = held_cursor(List.last(events), state)
    :queue.from_list([{first, last, length(events), events}])
  end

  defp oldest_in_flight(%{count: 0}, _state), do: []

  defp oldest_in_flight(%{sorted: true} = sub, _state),
    do: [elem(elem(:queue.peek(sub.in_flight), 1), 0)]

  defp oldest_in_flight(sub, state), do: [Enum.min(held_cursors(sub.in_flight, state))]

  # The checkpoint is the highest cursor with everything up to it acked:
  # just below the oldest event unacked, pending or to be read again.
  defp advance_checkpoint(state) do
    oldest =
      [
        case :queue.peek(state.pending) do
          {:value, r} -> cursor(r, state)
          :empty -> nil
        end,
        List.first(state.reread)
        | Enum.flat_map(state.subscribers, fn {_, sub} -> oldest_in_flight(sub, state) end)
      ]
      |> Enum.reject(&is_nil/1)

    checkpoint =
      case oldest do
        [] -> state.last_enqueued
        list -> Enum.min(list) - 1
      end

    if checkpoint > state.checkpoint,
      do: %{state | checkpoint: checkpoint},
      else: state
  end
end
