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
  # last one goes (dies or unsubscribes), its unacked events to be
  # delivered again.
  #
  # What it knows (queues, partitions, acks, the checkpoint, gaps) is
  # ExESDB.Subscriptions.Persistent.State, a pure module; this process does
  # the I/O around it: the emitter membership, reads, checkpoint writes,
  # monitors and the messages to subscribers.
  use GenServer, restart: :temporary

  alias ExESDB.{EventCodec, ReadAhead}
  alias ExESDB.Subscriptions.Persistent.State
  alias ExESDB.Subscriptions.Selector
  require Logger

  @message_events State.message_events()
  # ms between tries to reach a store out of reach (a C node restarting)
  @retry_ms 100

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
           store.backend.subscribe(store, self(), source, shape: :ranged, claim: name) do
      key = if match?({:stream, _}, source), do: :event_number, else: :position
      definition = %{selector: {type, selector}, cursor: key}
      start_from = opts[:start_from] || :origin

      # the process's state but for the subscription's own (State)
      state = %{
        store: store,
        name: name,
        source: source,
        member: member,
        definition: :erlang.term_to_binary(definition),
        # how events look to subscribers, and which field of an acked one
        # is its cursor (for callers that map records, e.g. Commanded)
        transform: opts[:transform] || (& &1),
        ack_key: opts[:ack_key] || key,
        # join reference => subscriber, for a join its caller withdraws
        joins: %{},
        # subscriber => %{join, caller (its monitor), out (deliveries
        # held, newest first)}: a joined subscriber is told of nothing
        # until its caller confirms it had the reply in time
        held: %{},
        # the position of the last event read from the store
        last_position: nil,
        # %{reader: ExESDB.ReadAhead, from: where its page starts, result:
        # its message, once received}: the next page of the source, read
        # while this process hands out the last (read_source/2)
        ahead: nil,
        # {$all position to read from, last version}: the stream was deleted
        stream_deleted: nil,
        # the checkpoint write in flight (its reference, and the timer
        # that gives up waiting for it) and the last checkpoint submitted
        # (nil: the last write failed): one write at a time (see ack/3)
        writing: nil,
        write_timer: nil,
        written: nil,
        # a failed write waits for :write_retry
        write_retry: false,
        # a delete_subscription waiting for the write in flight
        delete_after: nil
      }

      with {:ok, cursor, catching_up} <-
             resume_point(store, name, definition, source, start_from, live_from),
           {:ok, _, _} = started <- start(state, filter, cursor, catching_up, subscriber, opts) do
        started
      else
        {:error, reason} ->
          store.backend.unsubscribe(store, member)
          {:stop, reason}
      end
    else
      {:error, reason} -> {:stop, reason}
    end
  end

  defp start(state, filter, cursor, catching_up, subscriber, opts) do
    sub =
      State.new(state.source, cursor, catching_up,
        hold: hold(state.source),
        filter: filter,
        buffer_size: opts[:buffer_size],
        concurrency_limit: opts[:concurrency_limit],
        partition_by: opts[:partition_by]
      )

    state = Map.put(state, :sub, sub)

    # A checkpoint that cannot be written (a full disk, a limit) is an
    # answer to the caller, not a crash.
    case write_checkpoint(state, {:sync, first_write_timeout(state.store, opts)}) do
      :ok ->
        state = %{state | written: sub.checkpoint}
        {:ok, add_subscriber(state, subscriber), {:continue, :catch_up}}

      {:error, _} = error ->
        error
    end
  end

  # What the subscription keeps of the events its subscribers hold
  # unacked: for $all and event types, whose cursor is the position, only
  # that (it holds no copy of up to buffer_size events per subscriber;
  # what a subscriber that goes held is read again by position, and $all
  # keeps every event); a stream's events by version are kept as records
  # (a deleted stream's could not be read again by version).
  defp hold({:stream, _}), do: :records
  defp hold(_source), do: :cursors

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
          # not a term at all: a checkpoint another API wrote (the Erlang
          # API's definitions are its caller's bytes) holds the name
          {:error, {:undecodable, :malformed}} -> {:error, :subscription_definition_changed}
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
  def handle_call({:subscribe, pid, selector, _opts, {join, deadline}}, {caller, _}, state) do
    # the name is bound to its selector while running too
    joined =
      cond do
        selector != :erlang.binary_to_term(state.definition).selector ->
          {:error, :subscription_definition_changed}

        # the caller has given up (its call timed out): it must not find
        # itself a member later
        System.monotonic_time(:millisecond) >= deadline ->
          {:error, :timeout}

        true ->
          State.may_join(state.sub, pid)
      end

    case joined do
      :ok ->
        # held until the caller confirms (its reply came in time), so a
        # caller that gave up leaves nothing in the subscriber's mailbox
        held = %{join: join, caller: Process.monitor(caller), out: []}

        state = %{
          state
          | joins: Map.put(state.joins, join, pid),
            held: Map.put(state.held, pid, held)
        }

        state = state |> add_subscriber(pid, false) |> dispatch() |> resume_catch_up()
        {:reply, {:ok, self()}, state}

      {:error, _} = error ->
        {:reply, error, state}
    end
  end

  # A subscriber leaving takes only itself out (its unacked events go to
  # the others); anyone else stops the subscription for all. :ended when
  # it stops (Subscriptions.unsubscribe/2 waits for the exit).
  def handle_call(:unsubscribe, {caller, _}, state) do
    if State.subscriber_ref(state.sub, caller) != nil,
      do: state |> leave(caller) |> reply_or_stop(:ok),
      else: {:stop, :normal, :ended, state}
  end

  # A subscriber taken out by the store (in cluster mode, its node's
  # store stopped): as if it had unsubscribed.
  def handle_call({:leave, pid}, _from, state) do
    if State.subscriber_ref(state.sub, pid) != nil,
      do: state |> leave(pid) |> reply_or_stop(:ok),
      else: {:reply, :ok, state}
  end

  # delete_subscription (delete/2). The write in flight lands first: the
  # delete waits for its reply (then nothing more is written).
  def handle_call(:delete, from, %{writing: ref} = state) when ref != nil,
    do: {:noreply, %{state | delete_after: from}}

  def handle_call(:delete, from, state), do: delete(state, from)

  def handle_call(:checkpoint, _from, state), do: {:reply, state.sub.checkpoint, state}

  @impl true
  def handle_cast({:ack, pid, cursor}, state),
    do: {:noreply, state |> ack(pid, cursor) |> dispatch() |> resume_catch_up()}

  # The join's caller had the reply in time: the subscriber is told, and
  # gets what was held for it.
  def handle_cast({:confirm, join}, state) do
    case Enum.find(state.held, fn {_, h} -> h.join == join end) do
      {pid, h} ->
        Process.demonitor(h.caller, [:flush])
        send(pid, {:subscribed, self()})
        h.out |> Enum.reverse() |> Enum.each(&deliver(pid, &1, state))
        {:noreply, %{state | held: Map.delete(state.held, pid)}}

      nil ->
        {:noreply, state}
    end
  end

  # A join whose caller timed out before the reply came: the member it
  # added leaves again.
  def handle_cast({:withdraw, join}, state) do
    case Map.fetch(state.joins, join) do
      {:ok, pid} -> state |> leave(pid) |> noreply_or_stop()
      :error -> {:noreply, state}
    end
  end

  # Something that holds no cursor of this subscription (another struct, a
  # field that is not one) acknowledges nothing: a wrong argument must not
  # end the subscription of every subscriber.
  def handle_cast({:ack_record, pid, record}, state) do
    case Map.fetch(record, state.ack_key) do
      {:ok, cursor} when is_integer(cursor) and cursor >= 0 ->
        handle_cast({:ack, pid, cursor}, state)

      _ ->
        Logger.warning(
          "ExESDB subscription #{inspect(state.name)} ignored an ack of " <>
            "#{inspect(record, limit: 5)}: no #{inspect(state.ack_key)} cursor"
        )

        {:noreply, state}
    end
  end

  # ---- catch-up and live events ---------------------------------------

  @impl true
  def handle_continue(:catch_up, state), do: {:noreply, catch_up(state)}

  @impl true
  def handle_info(:catch_up, state),
    do: {:noreply, catch_up(%{state | sub: State.read_done(state.sub)})}

  # The store ended this subscription's membership (a C node that went
  # down: its session ends every member; the NIF's store closing; its
  # name's claim lost): join again, and read what the membership missed
  # from the store, as after a gap. Until it is a member again (with
  # the claim) it hands out, reads and writes nothing, acks only
  # recorded: another owner may run meanwhile (dispatch/1, catch_up/1,
  # write_acked/1).
  def handle_info({:subscription_down, {:transient, member}, _why}, %{member: member} = state) do
    send(self(), :resubscribe)
    {:noreply, %{state | member: nil, sub: %{state.sub | catching_up: true}}}
  end

  # the end of a membership it no longer holds (a C node session's claim
  # lost for a join it had given up: its barrier failed)
  def handle_info({:subscription_down, _, _}, state), do: {:noreply, state}

  def handle_info(:resubscribe, %{member: nil} = state) do
    case state.store.backend.subscribe(state.store, self(), state.source,
           shape: :ranged,
           claim: state.name
         ) do
      # what was queued meanwhile goes out now, the acks recorded
      # meanwhile are written
      {:ok, member, _} ->
        {:noreply, %{state | member: member} |> write_acked() |> dispatch() |> resume_catch_up()}

      # another node took the name meanwhile (a C node store's claims
      # went with the C node): it runs there
      {:error, :subscription_already_exists} ->
        {:stop, {:shutdown, :subscription_already_exists}, state}

      {:error, _} ->
        Process.send_after(self(), :resubscribe, @retry_ms)
        {:noreply, state}
    end
  end

  # Live deliveries: State.live/4 says whether one is taken, dropped
  # (catching up) or past a gap (then read from the store).
  def handle_info({:events, records, since}, state) do
    case State.live(state.sub, records, since, &EventCodec.finish(&1, state.store)) do
      {:dropped, _} -> {:noreply, state}
      {:ok, sub} -> {:noreply, state |> took_live(sub) |> dispatch() |> resume_catch_up()}
      {:gap, sub} -> {:noreply, resume_catch_up(%{state | sub: sub})}
    end
  end

  # The reader ended: after its last page or an error (received before
  # this, kept), or it failed without one: the page is read when due.
  def handle_info({:DOWN, ref, :process, _, _}, %{ahead: %{reader: %{mon: ref}}} = state) do
    if state.ahead.result == nil,
      do: {:noreply, %{state | ahead: nil}},
      else: {:noreply, state}
  end

  def handle_info({:DOWN, ref, :process, pid, _}, state) do
    cond do
      ref != nil and State.subscriber_ref(state.sub, pid) == ref ->
        state |> leave(pid) |> noreply_or_stop()

      # the caller of a join went before confirming it: as withdrawn
      held = Enum.find(state.held, fn {_, h} -> h.caller == ref end) ->
        state |> leave(elem(held, 0)) |> noreply_or_stop()

      true ->
        {:noreply, state}
    end
  end

  # the reply to the checkpoint write in flight: the acks that came
  # meanwhile are written now, as one
  # (one that failed is written again, after a while)
  def handle_info({ref, reply}, %{writing: ref} = state) do
    Process.cancel_timer(state.write_timer)
    state = %{state | writing: nil, write_timer: nil}

    state =
      if match?({:error, _}, reply),
        do: retry_write(state),
        else: state

    written(state)
  end

  # The page read ahead, come while this process did something else: kept
  # until it is due (read_source/2).
  def handle_info({tag, result}, %{ahead: %{reader: %{tag: tag}, result: nil}} = state),
    do: {:noreply, put_in(state.ahead.result, result)}

  def handle_info({ref, _reply}, state) when is_reference(ref), do: {:noreply, state}

  # A write in flight not answered within the store's timeout (a C node
  # that died with it): given up on, written again (the same checkpoint
  # twice is harmless).
  def handle_info({:write_timeout, ref}, %{writing: ref} = state),
    do: written(retry_write(%{state | writing: nil, write_timer: nil}))

  def handle_info({:write_timeout, _}, state), do: {:noreply, state}

  def handle_info(:write_retry, state),
    do: {:noreply, write_acked(%{state | write_retry: false})}

  # Exit signals, trapped only so that terminate/2 runs (the parent's are
  # GenServer's own): from anyone else they act as they would untrapped,
  # :normal ignored, any other reason stops it (Commanded stops a
  # subscription with Process.exit(pid, :shutdown)).
  def handle_info({:EXIT, _from, :normal}, state), do: {:noreply, state}
  def handle_info({:EXIT, _from, reason}, state), do: {:stop, reason, state}

  @impl true
  def terminate(_reason, state) do
    # The last acknowledged position is what a successor resumes from
    # (unless the subscription was deleted); it lands after the write in
    # flight: the store takes one process's submits in order. Written
    # before the membership (and with it the name's claim, on a C node)
    # goes: a C node takes an owner's write only while it holds the claim.
    # None without the membership: the claim is gone, nobody takes it,
    # and a C node that fell silent holding it would be waited for the
    # store's whole timeout (past the supervisor's shutdown time).
    unless state[:deleted] || state.member == nil, do: write_checkpoint(state, :sync)
    if state.member, do: state.store.backend.unsubscribe(state.store, state.member)
  end

  # no member, no claim: nothing read (resubscribe resumes)
  defp catch_up(%{member: nil} = state), do: state
  defp catch_up(%{sub: %{catching_up: false}} = state), do: dispatch(state)

  defp catch_up(state) do
    if State.queue_full?(state.sub) do
      # enough queued; read more once subscribers have taken some
      dispatch(state)
    else
      case read_page(state) do
        {:ok, records, next, state} ->
          sub = State.page_read(state.sub, EventCodec.finish(records, state.store), next)
          state = dispatch(%{state | sub: sub})
          if next == :eof, do: state, else: resume_catch_up(state)

        {:error, reason, state} ->
          read_failed(state, reason)
      end
    end
  end

  defp read_failed(state, :stream_not_found),
    do: dispatch(%{state | sub: State.nothing_to_read(state.sub)})

  # A deleted stream takes no event ever again. Its events stay in
  # $all: the rest of them is read from there, then the
  # subscription stays at its position (ending it would only
  # restart a subscriber such as a Commanded handler into the same
  # end, again and again).
  defp read_failed(state, :stream_deleted), do: state |> stream_deleted() |> catch_up()

  # a store out of reach (a C node restarting): read again soon. A store
  # closing (a C node stopping answers reads :closed before its session's
  # end comes) is no failure of the subscription either: the end of its
  # membership follows, and it joins again when the store is back.
  defp read_failed(state, reason)
       when reason in [:timeout, :closed] or
              (is_tuple(reason) and elem(reason, 0) == :unreachable) do
    Process.send_after(self(), :catch_up, @retry_ms)
    state
  end

  defp read_failed(_state, reason), do: exit({:catch_up_failed, reason})

  # A delivery that shed queued events moved last_enqueued back below
  # events already read: what a later scan of $all (the stream deleted)
  # starts after must move back too, to the last event still queued (or
  # the start of $all when none is).
  defp took_live(state, sub) do
    if sub.last_enqueued < state.sub.last_enqueued do
      last =
        case :queue.peek_r(sub.pending) do
          {:value, record} -> record.position
          :empty -> nil
        end

      %{state | sub: sub, last_position: last}
    else
      %{state | sub: sub}
    end
  end

  # The next page: of the source, or (its stream deleted) of $all from
  # `scan`, keeping the stream's events, until its last version.
  defp read_page(%{stream_deleted: nil} = state) do
    case read_source(state, State.read_from(state.sub)) do
      {{:ok, [], next}, state} ->
        {:ok, [], next, state}

      {{:ok, records, next}, state} ->
        {:ok, records, next, %{state | last_position: List.last(records).position}}

      {{:error, reason}, state} ->
        {:error, reason, state}
    end
  end

  defp read_page(%{stream_deleted: {scan, version}} = state) do
    {:stream, stream_id} = state.source

    if scan == :eof or state.sub.last_enqueued >= version do
      {:ok, [], :eof, state}
    else
      case state.store.backend.read(state.store, :all, scan, State.page(), :forward) do
        {:ok, records, next} ->
          mine = Enum.filter(records, &(&1.stream_id == stream_id))
          done = next == :eof or (mine != [] and List.last(mine).event_number >= version)
          {:ok, mine, if(done, do: :eof, else: next), %{state | stream_deleted: {next, version}}}

        {:error, reason} ->
          {:error, reason, state}
      end
    end
  end

  # A page of the source from `from`. After a page that is not the last,
  # a backend that reads ahead (read_ahead/0) reads the next one in a
  # process of its own (ExESDB.ReadAhead: the core's read, no records)
  # while this process hands this one out and builds the next page's
  # records when it is due: the read and the delivery overlap. A page
  # read ahead that says :eof was the end when it was read, before the
  # live deliveries handled (and dropped, catching up) since: what came
  # after it is read now, and that read says whether it is the end.
  defp read_source(%{ahead: %{from: from} = ahead} = state, from) do
    result =
      case ahead.result do
        nil -> ReadAhead.next(ahead.reader, state.store)
        result -> ReadAhead.take(ahead.reader, state.store, result)
      end

    case result do
      # the reader died without its page: read here, from the same place
      :down ->
        read_source(%{state | ahead: nil}, from)

      {:ok, records, :eof} ->
        {read_rest(state, records, from), %{state | ahead: nil}}

      {:ok, records, next} ->
        {{:ok, records, next}, %{state | ahead: %{ahead | from: next, result: nil}}}

      {:error, _} = error ->
        {error, stop_ahead(state)}
    end
  end

  defp read_source(state, from) do
    state = stop_ahead(state)

    case state.store.backend.read(state.store, state.source, from, State.page(), :forward) do
      {:ok, _, next} = page when is_integer(next) -> {page, read_ahead(state, next)}
      other -> {other, state}
    end
  end

  defp read_rest(state, records, from) do
    from = if records == [], do: from, else: State.cursor(List.last(records), state.sub) + 1

    case state.store.backend.read(state.store, state.source, from, State.page(), :forward) do
      {:ok, more, next} -> {:ok, records ++ more, next}
      {:error, _} = error -> error
    end
  end

  defp read_ahead(%{store: store} = state, from) do
    if store.backend.read_ahead() do
      reader = ReadAhead.start(store, state.source, from, State.page(), :forward, true)
      %{state | ahead: %{reader: reader, from: from, result: nil}}
    else
      state
    end
  end

  defp stop_ahead(%{ahead: nil} = state), do: state

  defp stop_ahead(state) do
    ReadAhead.stop(state.ahead.reader)
    %{state | ahead: nil}
  end

  defp stream_deleted(state) do
    {:stream, stream_id} = state.source
    # (a version it cannot tell: nothing more is read)
    version =
      case state.store.backend.stream_info(state.store, stream_id) do
        {:ok, version, _exists, _deleted} -> version
        {:error, _} -> state.sub.last_enqueued
      end

    Logger.info(
      "ExESDB subscription #{inspect(state.name)}: stream #{inspect(stream_id)} was " <>
        "deleted; its events after #{state.sub.last_enqueued} up to #{version} are read " <>
        "from $all, then nothing more comes"
    )

    %{state | stream_deleted: {(state.last_position || 0) + 1, version}}
  end

  # Read on while catching up and the queue has room; one read in flight.
  defp resume_catch_up(state) do
    {sub, read?} = State.resume_catch_up(state.sub)
    if read?, do: send(self(), :catch_up)
    %{state | sub: sub}
  end

  # ---- subscribers and delivery ----------------------------------------

  # A subscriber leaves (it went, unsubscribed or its join was
  # withdrawn): its unacked events are handed to the others.
  defp leave(state, pid) do
    Process.demonitor(State.subscriber_ref(state.sub, pid), [:flush])
    joins = Map.reject(state.joins, fn {_, joined} -> joined == pid end)

    {held, state} = pop_in(state.held[pid])
    if held, do: Process.demonitor(held.caller, [:flush])
    %{state | sub: State.remove_subscriber(state.sub, pid), joins: joins}
  end

  # The subscription ends with its last subscriber.
  defp noreply_or_stop(%{sub: %{subscribers: subs}} = state) when subs == %{},
    do: {:stop, :normal, state}

  defp noreply_or_stop(state), do: {:noreply, state |> dispatch() |> resume_catch_up()}

  defp reply_or_stop(%{sub: %{subscribers: subs}} = state, _reply) when subs == %{},
    do: {:stop, :normal, :ended, state}

  defp reply_or_stop(state, reply), do: {:reply, reply, state |> dispatch() |> resume_catch_up()}

  defp add_subscriber(state, pid, tell? \\ true) do
    ref = Process.monitor(pid)
    if tell?, do: send(pid, {:subscribed, self()})
    %{state | sub: State.add_subscriber(state.sub, pid, ref)}
  end

  # no member, no claim: nothing handed out (resubscribe resumes)
  defp dispatch(%{member: nil} = state), do: state

  defp dispatch(state) do
    state = reread(state)
    {sub, deliveries} = State.dispatch(state.sub)

    Enum.reduce(deliveries, %{state | sub: sub}, fn {pid, events}, state ->
      hand_out(pid, events, state)
    end)
  end

  # Sent, or held for a subscriber whose join is not confirmed yet.
  defp hand_out(pid, events, state) do
    case state.held do
      %{^pid => h} ->
        %{state | held: %{state.held | pid => %{h | out: [events | h.out]}}}

      _ ->
        deliver(pid, events, state)
        state
    end
  end

  # What a subscriber that went held unacked (hold: :cursors), read again
  # from the store before anything else is handed out: from the source,
  # then from $all for any the source no longer has.
  defp reread(%{sub: %{reread: [_ | _] = cursors, subscribers: subs}} = state)
       when subs != %{} do
    wanted = MapSet.new(cursors)
    found = scan(state, state.source, cursors, wanted)

    missing = wanted |> MapSet.difference(MapSet.new(found, & &1.position)) |> Enum.sort()

    found =
      if missing == [] or state.source == :all,
        do: found,
        else: Enum.sort_by(found ++ scan(state, :all, missing, MapSet.new(missing)), & &1.position)

    if length(found) < length(cursors),
      do:
        Logger.warning(
          "ExESDB subscription #{inspect(state.name)}: " <>
            "#{length(cursors) - length(found)} unacked events could not be read again"
        )

    %{state | sub: State.put_back(state.sub, EventCodec.finish(found, state.store))}
  end

  defp reread(state), do: state

  # The records of `source` at the positions in `wanted`, between the
  # first and the last of `cursors`, in order.
  defp scan(state, source, cursors, wanted),
    do: scan(state, source, hd(cursors), List.last(cursors), wanted, [])

  defp scan(state, source, from, upto, wanted, acc) do
    case state.store.backend.read(state.store, source, from, State.page(), :forward) do
      {:ok, records, next} ->
        acc = [Enum.filter(records, &MapSet.member?(wanted, &1.position)) | acc]

        if next == :eof or records == [] or List.last(records).position >= upto,
          do: acc |> Enum.reverse() |> Enum.concat(),
          else: scan(state, source, next, upto, wanted, acc)

      {:error, reason} ->
        exit({:catch_up_failed, reason})
    end
  end

  # Events go out in messages of at most @message_events: the VM copies a
  # bigger message into memory of its own, mapped for it and unmapped after,
  # which made delivering records 2-4x slower.
  defp deliver(pid, events, state), do: send_chunks(pid, events, length(events), state.transform)

  # (:lists.split/2 cuts a page of 1,000 in 5 µs, Enum.chunk_every/2 in 24)
  defp send_chunks(_pid, [], _n, _transform), do: :ok

  defp send_chunks(pid, events, n, transform) when n <= @message_events,
    do: send(pid, {:events, transform.(events)})

  defp send_chunks(pid, events, n, transform) do
    {chunk, rest} = :lists.split(@message_events, events)
    send(pid, {:events, transform.(chunk)})
    send_chunks(pid, rest, n - @message_events, transform)
  end

  # An ack that moves the checkpoint writes it without waiting, one
  # write at a time: acks that come while a write is in flight are
  # written as one when its reply comes (Commanded acks every event; in
  # cluster mode a write is a raft round); a delete waits for the one in
  # flight, so none lands after it.
  defp ack(state, pid, cursor),
    do: write_acked(%{state | sub: State.ack(state.sub, pid, cursor)})

  # (no membership, no claim: written once it is a member again)
  defp write_acked(%{member: nil} = state), do: state

  defp write_acked(%{writing: nil, delete_after: nil, write_retry: false} = state) do
    if state.written == nil or state.sub.checkpoint > state.written do
      ref = make_ref()

      # A store that refuses the submit (overloaded, closed, out of
      # reach) answers in the call and sends no reply: tried again later.
      case write_checkpoint(state, {:async, ref}) do
        :ok ->
          timer = Process.send_after(self(), {:write_timeout, ref}, state.store.timeout)
          %{state | writing: ref, write_timer: timer, written: state.sub.checkpoint}

        {:error, _} ->
          retry_write(state)
      end
    else
      state
    end
  end

  defp write_acked(state), do: state

  defp retry_write(state) do
    Process.send_after(self(), :write_retry, @retry_ms)
    %{state | written: nil, write_retry: true}
  end

  # The write in flight is over: a delete waiting for it goes now.
  defp written(state) do
    if state.delete_after,
      do: delete(state, state.delete_after),
      else: {:noreply, write_acked(state)}
  end

  # delete_subscription: the checkpoint is deleted while this process
  # still holds the name, so a subscribe_to racing it either joined
  # before (and ends with it) or starts after, without the checkpoint.
  defp delete(state, from) do
    state = %{state | delete_after: nil}

    # Between two memberships it holds no claim to write through: the
    # delete goes as a Deletion's does (the name still held here)
    opts = if state.member == nil, do: [], else: [here: true]

    # (a checkpoint another API deleted already: deleted all the same)
    case state.store.backend.submit(state.store, {:checkpoint_delete, state.name}, opts) do
      reply when reply in [:ok, {:error, :subscription_not_found}] ->
        GenServer.reply(from, reply)
        {:stop, :normal, Map.put(state, :deleted, true)}

      {:error, _} = error ->
        GenServer.reply(from, error)
        {:noreply, state}
    end
  end

  # A start with a deadline (Placement's, in cluster mode) writes its
  # first checkpoint within it.
  defp first_write_timeout(store, opts) do
    case opts[:deadline] do
      nil -> store.timeout
      deadline -> max(1, min(store.timeout, deadline - System.monotonic_time(:millisecond)))
    end
  end

  defp write_checkpoint(state, {:sync, timeout}),
    do: write_checkpoint(%{state | store: %{state.store | timeout: timeout}}, :sync)

  defp write_checkpoint(state, mode) do
    command = {:checkpoint_put, state.name, state.sub.checkpoint, state.definition}

    # (here: in cluster mode, this replica's only, the leader's while
    # the subscription runs there; a deposed leader's write fails)
    opts =
      case mode do
        {:async, ref} -> [async: true, ref: ref, here: true]
        :sync -> [here: true]
      end

    state.store.backend.submit(state.store, command, opts)
  end
end
