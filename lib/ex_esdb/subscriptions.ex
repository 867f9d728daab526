defmodule ExESDB.Subscriptions do
  @moduledoc """
  Subscriptions to committed events.

  Selectors: `{:by_stream, stream_id}` (or `"$all"`), `{:by_event_type,
  type}`, `{:by_event_pattern, map}` (matched against the
  `%ExESDB.EventRecord{}` fields, nested maps as subsets) and
  `{:by_event_payload, map}` (matched against the decoded data).

  **Transient** (`subscribe/4`): the subscriber receives
  `{:events, [%ExESDB.EventRecord{}]}` for events committed after it
  subscribed. Its mailbox is bounded by credit: it may be sent 10,000
  events (option `credit`) before it calls `grant/3` for those it has
  handled; a commit past that ends the subscription with
  `{:subscription_overflow, subscription, first_dropped_position}`.
  When the store stops it gets `{:subscription_down, subscription,
  :closed}`. Subscribers on other nodes are reached through one relay
  process per node, with the same credit and messages.

  **Persistent** (`subscribe_to/5`): named and durable. The subscriber gets
  `{:subscribed, subscription}`, then every matching event from
  `start_from` (`:origin`, `:current`, or a cursor: the events after that
  stream version for a stream selector, after that global position
  otherwise) — caught up from the store, then live, with no gap and no
  duplicate — as `{:events, [...]}`, with at most `buffer_size` (default
  1,000) unacknowledged at a time. `ack_event/3` acknowledges an event and
  those delivered to that subscriber before it (with `partition_by` an
  event held back for its partition can come after a later one: an ack
  of the later one does not cover it); the checkpoint is written to the store, and a later
  subscriber under the same name resumes after it and gets unacknowledged
  events again (at least once). With `concurrency_limit: n` up to n
  subscribers share the subscription; `partition_by: fun` keeps each
  partition's events on one subscriber, in order, one unacknowledged at a
  time. A subscription whose subscribers fall behind live events keeps at
  most a few thousand queued and reads the rest from the store later, so
  its memory stays bounded.

  A persistent subscription never skips an event: a delivery that does
  not continue from what it saw last (events another OS process wrote, a
  fan-out that could not be built) sends it back to reading from the
  store, before its checkpoint can move past what it missed.

  A persistent subscription stores its starting point when it is created
  (`:current` included), so it resumes from there even before its first
  ack. Its name stays bound to its selector: subscribing under the same
  name with another selector (while it runs too, or where the Erlang API
  wrote a checkpoint under that name) answers `{:error,
  :subscription_definition_changed}` (delete the subscription first to
  reuse the name). Subscribing while the subscription is stopping (its
  last subscriber just went) starts it anew once it is gone. A
  `subscribe_to` that times out (the store's `timeout`) answers `{:error,
  :timeout}` and leaves no subscriber behind, nor a `{:subscribed, _}` or
  events in the subscriber's mailbox.

  With several subscribers, `unsubscribe/2` called by one of them takes
  only that one out (its unacknowledged events go to the others); the
  subscription ends when its last subscriber goes, or when a process
  that is not one of its subscribers unsubscribes it.

  **A deleted stream.** A stream subscription whose stream is deleted
  delivers every event of it all the same: those it had not read yet
  come from `$all`, where a deleted stream's events stay (a subscription
  that never read the stream, e.g. one made after the delete, scans
  `$all` from its start for them). Then it stays at its position,
  running: a deleted stream takes no event again, so nothing more comes.
  It does not end, which would only restart a subscriber such as a
  Commanded handler into the same end.

  **C node backend** (`backend: :cnode`). A persistent subscription runs
  on the BEAM node that started it, which owns its name on the C node
  store: another BEAM node's `subscribe_to/5` of that name answers
  `{:error, :subscription_already_exists}` until the subscription ends or
  its node goes (the C node does not keep owners over its restart: the
  first to join again keeps the name, another stops). With a cluster of
  C nodes (`cnode_cluster`) the name has one owner in the cluster: it is
  claimed at the leading C node, and when leadership moves the
  subscription takes it again at the new leader, reading what it missed
  from the store (another owner having taken the name meanwhile, it
  stops with `{:shutdown, :subscription_already_exists}`). Its
  checkpoint writes go through the claim: none is taken once the claim
  is lost (docs/CLUSTER.md, "A cluster of C nodes").

  **Cluster mode** (`db_type: :cluster`). A persistent subscription owns
  a checkpoint, so it runs once per cluster, on the leader:
  `subscribe_to/5`, `delete_subscription/2` and the `running` of
  `get_subscriptions/1` go to the leader from any node (tried again while
  an election runs, within the store's `timeout`; then `{:error,
  :no_quorum}` or `{:error, {:not_leader, node}}`). It starts from its
  checkpoint read after a barrier, so with every checkpoint write
  acknowledged before, and it writes its checkpoint to the leader's
  replica only. Events go from the leader to subscribers on any node.
  When leadership moves (the leader stopped, killed, cut off, or
  transferred), the subscription stops on the old leader and each
  subscriber still alive is subscribed again on the new leader by the
  store on the subscriber's node: the subscriber gets `{:subscribed,
  new_subscription}` (ack to that one from then on; acks sent to the old
  one are lost) and the events after the replicated checkpoint again, in
  order, with no gap: events it saw but whose ack was not yet written
  come twice. A subscriber that monitors its subscription sees it go
  down with `{:shutdown, :leader_moved}` or `:noconnection`; one that
  subscribes again itself then (a Commanded handler restarting) passes
  `follow_leader: false`, or the store's move of its old self can hold
  the name on the new leader (`:subscription_already_exists`) when it
  comes back. While an old
  leader cut off from the others has not yet stepped down (up to an
  election timeout), both may deliver: duplicates, never a gap. Stopping
  a node's store takes its subscribers out of their subscriptions. The
  `partition_by` and `transform` functions run on the leader: their
  modules must be loaded on every node.

  Errors: `:subscription_already_exists`, `:too_many_subscribers`,
  `:subscription_not_found`, `:subscription_definition_changed`,
  `:store_not_started`, `:timeout`, `:noproc` (the subscriber, a local pid, is not
  alive: nothing is started or stored). A wrong argument
  answers `{:error, {:invalid_<what>, value}}` and never raises or starts
  anything: `{:invalid_selector, selector}`, `{:invalid_subscriber, term}`,
  `{:invalid_subscription_name, name}` (also for names starting with
  `"ex_esdb:"`, reserved for the store's own), `{:invalid_subscription, term}`,
  `{:invalid_event, term}` (to `ack_event/3`), an option with a wrong
  value `{:invalid_<option>, value}` (`{:invalid_start_from, :nowhere}`,
  `{:invalid_buffer_size, 0}`, ...) and an unknown option
  `{:invalid_option, {key, value}}`.

  **Phoenix.PubSub.** With the store option `pub_sub: name` (or
  `{module, name}` for any module with `broadcast/3`; see
  `ExESDB.Options`), every committed event is also broadcast, as
  `{:events, [%ExESDB.EventRecord{}]}` in commit order, on two topics:

    * `"<store_id>:$all"`: every event, e.g. `"orders:$all"`;
    * `"<store_id>:<stream_id>"`: the events of that stream, e.g.
      `"orders:order-1"`.

  Subscribe with `Phoenix.PubSub.subscribe(name, "orders:$all")`. PubSub
  delivery is best effort (no catch-up, no acknowledgement); use a
  persistent subscription where no event may be missed.

  Events come in messages of at most 256.

  **Subscribers that take many events** should keep their message queue
  off the process heap: `Process.flag(:message_queue_data, :off_heap)`,
  or `spawn_opt: spawn_opt()` for a GenServer. With the default (on heap)
  every garbage collection moves the queued events into the heap again;
  fanning events out to ten subscribers measured 1.2-2x faster off heap
  (docs/PERFORMANCE.md). The subscription processes of this module do it
  already.
  """

  alias ExESDB.{EventCodec, EventRecord, Store}
  alias ExESDB.Subscriptions.{Forwarder, Persistent, Relay, Selector}

  @transient_options [:transform, :credit]

  # Events a transient subscriber may be sent before it grants more.
  @default_credit 10_000
  # Cursors, member ids and grants are u64 in the store; a credit of
  # 2^64 - 1 would be its "unbounded".
  @max_u64 0xFFFFFFFFFFFFFFFF
  @persistent_options [
    :start_from,
    :buffer_size,
    :concurrency_limit,
    :partition_by,
    :transform,
    :ack_key,
    :follow_leader
  ]

  @type selector ::
          {:by_stream, String.t()}
          | {:by_event_type, String.t()}
          | {:by_event_pattern, map()}
          | {:by_event_payload, map()}

  @doc """
  Spawn options for a process that receives many events: its message
  queue off the heap (see the module doc).
  """
  @spec spawn_opt() :: [{:message_queue_data, :off_heap}]
  def spawn_opt, do: [message_queue_data: :off_heap]

  # How often subscribe_to tries again when the running subscription it
  # found was stopping (it writes its checkpoint on the way out).
  @join_tries 20

  @typedoc "A transient subscription handle, or a persistent subscription's pid."
  @type subscription :: {:transient, term()} | pid()

  @doc """
  Subscribe `subscriber` (default: the caller) to events committed from now
  on. Returns a handle for `unsubscribe/2` and `grant/3`.

  Options: `transform`, a function applied to each list of events before
  it is sent; `credit`, how many events may be sent before the subscriber
  grants more (default #{@default_credit}; `:infinity` for no bound). Any
  other option is `{:error, {:invalid_option, {key, value}}}`.

  Flow control: the store cannot see a mailbox, so a subscriber says how
  much it has taken by calling `grant(store, subscription, n)` after
  handling `n` events. A commit that would take the subscriber past its
  credit ends the subscription with one last message,
  `{:subscription_overflow, subscription, first_dropped_position}` (a
  global position). To go on without a gap, subscribe again *first*, then
  read `$all` from that position to `:eof` (`ExESDB.Streams.read_page/5`,
  keeping what the selector matches), and skip live events at or below
  the last position read: reading first and subscribing after would miss
  what is committed in between. A commit is delivered whole and the
  writer may merge concurrent appends into one commit, so a burst larger
  than the credit left overflows even a subscriber whose mailbox is
  empty: give credit above the largest burst expected. The same message
  ends a subscription whose deliveries would have a hole (the store's
  fan-out queue, `max_fanout_bytes`, was full, or events could not be
  built for it): what follows the position it names was not delivered.
  When the
  store stops, each transient subscriber gets `{:subscription_down,
  subscription, :closed}` and nothing more: subscribe again once the
  store is back. A subscription that fails (its `transform`, or the
  serializer, raised) ends with `{:subscription_down, subscription,
  {:failed, reason}}`.
  """
  @spec subscribe(atom(), selector(), pid(), keyword()) ::
          {:ok, subscription()} | {:error, term()}
  def subscribe(store, selector, subscriber \\ self(), opts \\ []) do
    with :ok <- check_subscriber(subscriber),
         :ok <- check_options(opts, @transient_options),
         {:ok, source, filter} <- resolve_selector(selector),
         {:ok, s} <- Store.fetch(store) do
      transform = opts[:transform]
      credit = Keyword.get(opts, :credit, @default_credit)
      # the NIF's own messages are the subscriber's when nothing needs
      # filtering, reshaping or deserializing in Elixir
      direct = filter == nil and transform == nil and EventCodec.format(s) == {EventRecord, true}

      cond do
        node(subscriber) != node() ->
          Relay.subscribe(
            s,
            store,
            source,
            filter,
            subscriber,
            transform || (& &1),
            credit
          )
          |> case do
            {:ok, handle} -> {:ok, {:transient, handle}}
            error -> error
          end

        direct ->
          case s.backend.subscribe(s, subscriber, source, credit: credit) do
            {:ok, member, _last} -> {:ok, {:transient, member}}
            {:error, _} = error -> error
          end

        true ->
          spec = {Forwarder, {s, source, filter, subscriber, transform || (& &1), credit}}

          case start_child(store, spec) do
            {:ok, pid} -> {:ok, {:transient, pid}}
            {:error, _} = error -> error
          end
      end
    end
  end

  @doc """
  Let a transient subscription send `n` more events: call it after
  handling `n` of them (see `subscribe/4`). `{:error,
  :subscription_not_found}` once the subscription ended.
  """
  @spec grant(atom(), subscription(), pos_integer()) :: :ok | {:error, term()}
  def grant(_store, _sub, n) when n not in 1..@max_u64//1,
    do: {:error, {:invalid_credit, n}}

  def grant(_store, {:transient, {relay, member}}, n) when is_pid(relay),
    do: Relay.grant(relay, member, n)

  def grant(_store, {:transient, pid}, n) when is_pid(pid) do
    # a call: the credit is there before the caller's next append
    GenServer.call(pid, {:grant, n})
  catch
    :exit, _ -> {:error, :subscription_not_found}
  end

  def grant(store, {:transient, member}, n) when member in 0..@max_u64//1 do
    with {:ok, s} <- Store.fetch(store) do
      s.backend.grant(s, member, n)
    end
  end

  def grant(_store, sub, _n), do: {:error, {:invalid_subscription, sub}}

  @doc """
  Subscribe to the persistent subscription `name`, creating it on first
  use. Options: `start_from` (`:origin`, the default, `:current` or a
  cursor, a non-negative integer), `buffer_size` and `concurrency_limit`
  (positive integers), `partition_by` (a function of one event);
  `transform` (a function applied to each list of events before it is
  sent) and `ack_key` (the field of an acked event that holds its cursor)
  for callers that hand out events of another shape; `follow_leader`
  (cluster mode, default `true`): `false` for a subscriber that subscribes
  again itself when its subscription goes down (a Commanded handler,
  restarted by its supervisor), so the store does not subscribe it again
  on the new leader as well. They are checked before anything starts:
  see the module doc for the errors.
  """
  @spec subscribe_to(atom(), String.t(), selector(), pid(), keyword()) ::
          {:ok, pid()} | {:error, term()}
  def subscribe_to(store, name, selector, subscriber \\ self(), opts \\ []) do
    with :ok <- check_name(name),
         :ok <- check_subscriber(subscriber),
         :ok <- check_options(opts, @persistent_options),
         {:ok, _, _} <- resolve_selector(selector),
         {:ok, s} <- Store.fetch(store) do
      # in cluster mode it runs on the leader (ExESDB.Subscriptions.Placement)
      case s.backend.placement(s) do
        :local -> start_persistent(store, {Persistent, {s, name, selector, subscriber, opts}})
        placement -> placement.subscribe(s, name, selector, subscriber, opts)
      end
    end
  end

  @doc false
  # Start the persistent subscription of `spec` here, or join it here.
  # A join waits up to `timeout` (default the store's).
  def start_persistent(store, {_, {s, _, _, _, _}} = spec, timeout \\ nil),
    do: start_or_join(store, spec, timeout || s.timeout, @join_tries)

  # Start a child under the store's subscription supervisor. While the
  # store's system stops, the supervisor is gone before the store is
  # closed: then the store is not started, for the caller too.
  @doc false
  def start_child(store, spec) do
    DynamicSupervisor.start_child(supervisor(store), spec)
  catch
    :exit, _ -> {:error, :store_not_started}
  end

  defp start_or_join(store, {_, {_, _, selector, subscriber, opts}} = spec, timeout, tries) do
    case start_child(store, spec) do
      {:ok, pid} ->
        {:ok, pid}

      {:error, {:already_started, pid}} ->
        case join(pid, subscriber, selector, opts, timeout) do
          # it stopped before answering: once it is gone, start it anew
          {:gone, _} when tries > 0 ->
            await_down(pid, timeout)
            start_or_join(store, spec, timeout, tries - 1)

          {:gone, _} ->
            {:error, :subscription_already_exists}

          reply ->
            reply
        end

      {:error, _} = error ->
        error
    end
  end

  # Join a running subscription. The join carries its deadline: one the
  # subscription handles after its caller gave up is refused, and a reply
  # that comes too late is withdrawn, so a timed-out join (`{:error,
  # :timeout}`) never leaves a member behind. The subscriber hears of
  # the join (`{:subscribed, _}`, events) only once its caller confirms
  # it had the reply in time: a timed-out join leaves nothing in its
  # mailbox either.
  defp join(pid, subscriber, selector, opts, timeout) do
    ref = make_ref()
    deadline = System.monotonic_time(:millisecond) + timeout

    try do
      case GenServer.call(pid, {:subscribe, subscriber, selector, opts, {ref, deadline}}, timeout) do
        # in time: the subscription tells the subscriber now
        {:ok, _} = ok ->
          GenServer.cast(pid, {:confirm, ref})
          ok

        other ->
          other
      end
    catch
      :exit, {:timeout, _} ->
        GenServer.cast(pid, {:withdraw, ref})
        {:error, :timeout}

      :exit, reason ->
        {:gone, reason}
    end
  end

  # Wait until `pid` is gone; its registered name goes a moment later, so
  # a retry that still finds it backs off a millisecond.
  defp await_down(pid, timeout) do
    ref = Process.monitor(pid)

    receive do
      {:DOWN, ^ref, :process, ^pid, _} -> :ok
    after
      timeout -> Process.demonitor(ref, [:flush])
    end

    Process.sleep(1)
  end

  @doc """
  Acknowledge `event` and every event before it. Call it from the
  subscriber. `event` is one as it was handed out (an
  `%ExESDB.EventRecord{}`, or a struct `transform` made of one, whose
  `ack_key` field holds the cursor) or its cursor: the stream version for
  a stream selector, the global position otherwise. A struct that holds
  no such cursor acknowledges nothing (a warning is logged); the
  subscription goes on.
  """
  @spec ack_event(atom(), pid(), ExESDB.EventRecord.t() | struct() | non_neg_integer()) ::
          :ok | {:error, term()}
  def ack_event(_store, subscription, %_{} = event) when is_pid(subscription),
    do: Persistent.acknowledge(subscription, self(), event)

  def ack_event(_store, subscription, cursor)
      when is_pid(subscription) and is_integer(cursor) and cursor >= 0,
      do: Persistent.acknowledge(subscription, self(), cursor)

  def ack_event(_store, subscription, _event) when not is_pid(subscription),
    do: {:error, {:invalid_subscription, subscription}}

  def ack_event(_store, _subscription, event), do: {:error, {:invalid_event, event}}

  @doc """
  Stop a subscription; a persistent one keeps its checkpoint. One of a
  persistent subscription's several subscribers unsubscribing takes only
  itself out (see the module doc).
  """
  @spec unsubscribe(atom(), subscription()) :: :ok | {:error, term()}
  def unsubscribe(_store, {:transient, {relay, member}}) when is_pid(relay),
    do: Relay.unsubscribe(relay, member)

  def unsubscribe(_store, {:transient, pid}) when is_pid(pid) do
    GenServer.call(pid, :unsubscribe)
  catch
    :exit, _ -> {:error, :subscription_not_found}
  end

  def unsubscribe(store, {:transient, member}) when member in 0..@max_u64//1 do
    with {:ok, s} <- Store.fetch(store) do
      s.backend.unsubscribe(s, member)
    end
  end

  def unsubscribe(store, pid) when is_pid(pid) do
    # (in cluster mode, not to be moved with it to another leader)
    timeout =
      with {:ok, s} <- Store.fetch(store) do
        with placement when placement != :local <- s.backend.placement(s),
             do: placement.detach(store, pid, self())

        s.timeout
      else
        _ -> 5_000
      end

    mref = Process.monitor(pid)

    # the subscription ended (its last subscriber left): gone, and its
    # checkpoint written, before this returns
    try do
      case GenServer.call(pid, :unsubscribe) do
        :ended -> await_exit(pid, mref, timeout)
        _ -> Process.demonitor(mref, [:flush])
      end
    catch
      :exit, _ -> Process.demonitor(mref, [:flush])
    end

    :ok
  catch
    :exit, _ -> :ok
  end

  def unsubscribe(_store, other), do: {:error, {:invalid_subscription, other}}

  @doc """
  Delete a persistent subscription and its checkpoint; a running one stops.
  Once it returns, no subscription of that name runs with the deleted
  checkpoint: a `subscribe_to` racing it joined before (and its
  subscription ended) or starts after, from its `start_from`.
  """
  @spec delete_subscription(atom(), String.t()) :: :ok | {:error, term()}
  def delete_subscription(store, name) do
    with :ok <- check_name(name),
         {:ok, s} <- Store.fetch(store) do
      case s.backend.placement(s) do
        :local -> delete_persistent(store, s, name)
        placement -> placement.delete(s, name)
      end
    end
  end

  @doc false
  # The running persistent subscription `name`: in this node's registry,
  # or in cluster mode the leader's.
  def whereis(store, name) do
    with {:ok, s} <- Store.fetch(store) do
      case s.backend.placement(s) do
        :local -> whereis_persistent(store, name)
        placement -> placement.whereis(s, name)
      end
    end
  end

  @doc false
  def whereis_persistent(store, name) do
    case Registry.lookup(registry(store), name) do
      [{pid, _}] -> if persistent?(pid), do: {:ok, pid}, else: {:error, :subscription_not_found}
      [] -> {:error, :subscription_not_found}
    end
  end

  @doc false
  # The names of the persistent subscriptions running in this node's
  # registry.
  def running_persistent(store) do
    registry(store)
    |> Registry.select([{{:"$1", :"$2", :_}, [], [{{:"$1", :"$2"}}]}])
    |> Enum.flat_map(fn {name, pid} -> if persistent?(pid), do: [name], else: [] end)
  end

  @doc false
  # A running persistent subscription (a pid of this node): not a
  # Deletion holding its name, nor one that has ended (a registry entry
  # outlives its process until the registry handles the exit).
  def persistent?(pid) do
    case Process.info(pid, :dictionary) do
      {:dictionary, d} -> d[:"$initial_call"] == {Persistent, :init, 1}
      nil -> false
    end
  end

  # Until `pid` (monitored as `mref`) is gone, within `timeout`.
  defp await_exit(pid, mref, timeout) do
    receive do
      {:DOWN, ^mref, :process, ^pid, _} -> :ok
    after
      timeout -> Process.demonitor(mref, [:flush])
    end
  end

  @doc false
  # Delete the persistent subscription `name` held in this node's registry.
  def delete_persistent(store, s, name), do: delete_named(store, s, name, @join_tries)

  # The checkpoint is deleted by whoever holds the name: the running
  # subscription (which then stops) or, when none runs, a Deletion
  # process registered under it. A subscribe_to racing the delete thus
  # joins before it or starts after it, never with the old checkpoint.
  defp delete_named(store, s, name, tries) do
    ref = make_ref()

    case start_child(store, {Persistent.Deletion, {s, name, self(), ref}}) do
      {:ok, pid} ->
        mref = Process.monitor(pid)

        # (the store answers every submit within its timeout; the
        # Deletion then stops, and with it goes its hold of the name)
        receive do
          {:checkpoint_deleted, ^ref, reply} ->
            await_exit(pid, mref, s.timeout)
            reply

          {:DOWN, ^mref, :process, ^pid, _} ->
            receive do
              {:checkpoint_deleted, ^ref, reply} -> reply
            after
              0 -> {:error, :store_not_started}
            end
        end

      {:error, {:already_started, pid}} ->
        mref = Process.monitor(pid)

        try do
          # (it waits for its checkpoint write in flight, given up after
          # the store's timeout, then submits the delete)
          reply = GenServer.call(pid, :delete, 2 * s.timeout)

          # it answers, then ends (its membership, and on a C node its
          # claim on the name, given back): gone before this returns
          if reply in [:ok, {:error, :subscription_not_found}],
            do: await_exit(pid, mref, s.timeout),
            else: Process.demonitor(mref, [:flush])

          reply
        catch
          # it goes on with the delete: it may be applied
          :exit, {:timeout, _} ->
            Process.demonitor(mref, [:flush])
            {:error, :outcome_unknown}

          # it stopped (or was a Deletion) meanwhile: once it is gone, again
          :exit, _ when tries > 0 ->
            await_exit(pid, mref, s.timeout)
            # (its registry entry goes a moment later)
            Process.sleep(1)
            delete_named(store, s, name, tries - 1)

          :exit, _ ->
            Process.demonitor(mref, [:flush])
            {:error, :timeout}
        end

      {:error, _} = error ->
        error
    end
  end

  @doc """
  The persistent subscriptions the store knows: name, selector, checkpoint
  and whether one is running, every one, in byte order of their names. A
  checkpoint this module did not write (one put through the Erlang API,
  whose definition is the caller's own bytes) is listed with
  `selector: nil`; a definition holding what may not be decoded (a fun, a
  pid, ...) answers `{:error, {:undecodable, reason}}`.
  """
  @spec get_subscriptions(atom()) :: {:ok, [map()]} | {:error, term()}
  def get_subscriptions(store) do
    with {:ok, s} <- Store.fetch(store),
         {:ok, running} <- running(s),
         {:ok, list} <- all_checkpoints(s, nil, []) do
      describe(s, MapSet.new(running), list, [])
    end
  end

  # The subscriptions running: in this node's registry, or in cluster
  # mode in the leader's, and the checkpoints read after a barrier (so
  # they hold every write acknowledged before the call, on any node).
  defp running(s) do
    case s.backend.placement(s) do
      :local ->
        {:ok, running_persistent(s.store_id)}

      placement ->
        with {:ok, names} <- placement.running(s),
             :ok <- s.backend.barrier(s),
             do: {:ok, names}
    end
  end

  # Every checkpoint, page after page (each after the last name seen)
  # until an empty page.
  @checkpoint_page 1000
  defp all_checkpoints(s, after_name, acc) do
    case s.backend.checkpoint_list(s, after_name, @checkpoint_page) do
      {:ok, []} -> {:ok, acc |> Enum.reverse() |> Enum.concat()}
      {:ok, page} -> all_checkpoints(s, page |> List.last() |> elem(0), [page | acc])
      {:error, _} = error -> error
    end
  end

  # A stored definition is a stored term: decoded with the store's checks
  # (no funs, pids, ports or references).
  defp describe(_s, _running, [], acc), do: {:ok, Enum.reverse(acc)}

  # the store's own ("ex_esdb:" names, e.g. the cluster's member records)
  defp describe(s, running, [{"ex_esdb:" <> _, _, _, _} | rest], acc),
    do: describe(s, running, rest, acc)

  defp describe(s, running, [{name, checkpoint, definition, updated_us} | rest], acc) do
    selector =
      case s.backend.decode_term(definition) do
        {:ok, %{selector: selector}} -> {:ok, selector}
        {:ok, _other_shape} -> {:ok, nil}
        {:error, {:undecodable, :malformed}} -> {:ok, nil}
        {:error, _} = error -> error
      end

    case selector do
      {:ok, selector} ->
        sub = %{
          name: name,
          selector: selector,
          checkpoint: checkpoint,
          updated_at: DateTime.from_unix!(updated_us, :microsecond),
          running: MapSet.member?(running, name)
        }

        describe(s, running, rest, [sub | acc])

      {:error, _} = error ->
        error
    end
  end

  @doc false
  # the processes of a store's subscriptions
  def supervisor(store), do: :"exesdb_subscriptions_#{store}"

  @doc false
  # names a store's persistent subscriptions (by name) and relays
  # ({:relay, node})
  def registry(store), do: :"exesdb_registry_#{store}"

  # ---- argument checks ----------------------------------------------------

  defp resolve_selector({type, value}), do: Selector.resolve(type, value)
  defp resolve_selector(other), do: {:error, {:invalid_selector, other}}

  # "ex_esdb:" names are the store's own (the cluster's barrier deletes
  # the checkpoint "ex_esdb:barrier").
  defp check_name("ex_esdb:" <> _ = name), do: {:error, {:invalid_subscription_name, name}}
  defp check_name(name) when is_binary(name) and name != "", do: :ok
  defp check_name(name), do: {:error, {:invalid_subscription_name, name}}

  # A local subscriber that is already gone is :noproc on every path (the
  # NIF's own delivery answers it; a forwarder or a persistent subscription
  # would otherwise start for no one). One on another node is watched by
  # its relay, which drops it when its :DOWN comes.
  defp check_subscriber(pid) when is_pid(pid) and node(pid) == node(),
    do: if(Process.alive?(pid), do: :ok, else: {:error, :noproc})

  defp check_subscriber(pid) when is_pid(pid), do: :ok
  defp check_subscriber(other), do: {:error, {:invalid_subscriber, other}}

  defp check_options(opts, known) when is_list(opts) do
    Enum.reduce_while(opts, :ok, fn
      {key, value}, :ok when is_atom(key) ->
        cond do
          key not in known -> {:halt, {:error, {:invalid_option, {key, value}}}}
          valid_option?(key, value) -> {:cont, :ok}
          true -> {:halt, {:error, {:"invalid_#{key}", value}}}
        end

      other, :ok ->
        {:halt, {:error, {:invalid_option, other}}}
    end)
  end

  defp check_options(other, _known), do: {:error, {:invalid_option, other}}

  defp valid_option?(:start_from, v), do: v in [:origin, :current] or non_neg_integer?(v)
  defp valid_option?(:buffer_size, v), do: is_integer(v) and v > 0
  defp valid_option?(:concurrency_limit, v), do: is_integer(v) and v > 0
  defp valid_option?(:partition_by, v), do: v == nil or is_function(v, 1)
  defp valid_option?(:transform, v), do: v == nil or is_function(v, 1)
  defp valid_option?(:credit, v), do: v == :infinity or v in 1..(@max_u64 - 1)//1
  defp valid_option?(:ack_key, v), do: v == nil or (is_atom(v) and v not in [true, false])
  defp valid_option?(:follow_leader, v), do: is_boolean(v)

  defp non_neg_integer?(v), do: v in 0..@max_u64//1
end
