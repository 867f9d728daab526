defmodule ExESDB.Subscriptions do
  @moduledoc """
  Subscriptions to committed events.

  Selectors: `{:by_stream, stream_id}` (or `"$all"`), `{:by_event_type,
  type}`, `{:by_event_pattern, map}` (matched against the
  `%ExESDB.EventRecord{}` fields, nested maps as subsets) and
  `{:by_event_payload, map}` (matched against the decoded data).

  **Transient** (`subscribe/3`): the subscriber receives
  `{:events, [%ExESDB.EventRecord{}]}` for events committed after it
  subscribed, nothing to acknowledge. Subscribers on other nodes are
  reached through one relay process per node.

  **Persistent** (`subscribe_to/5`): named and durable. The subscriber gets
  `{:subscribed, subscription}`, then every matching event from
  `start_from` (`:origin`, `:current`, or a cursor: the events after that
  stream version for a stream selector, after that global position
  otherwise) — caught up from the store, then live, with no gap and no
  duplicate — as `{:events, [...]}`, with at most `buffer_size` (default
  1,000) unacknowledged at a time. `ack_event/3` acknowledges an event and
  those before it; the checkpoint is written to the store, and a later
  subscriber under the same name resumes after it and gets unacknowledged
  events again (at least once). With `concurrency_limit: n` up to n
  subscribers share the subscription; `partition_by: fun` keeps each
  partition's events on one subscriber, in order, one unacknowledged at a
  time. A subscription whose subscribers fall behind live events keeps at
  most a few thousand queued and reads the rest from the store later, so
  its memory stays bounded.

  Errors: `:subscription_already_exists`, `:too_many_subscribers`,
  `:subscription_not_found`, `{:invalid_selector, term}`,
  `:store_not_started`.

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

  @typedoc "A transient subscription handle, or a persistent subscription's pid."
  @type subscription :: {:transient, term()} | pid()

  @doc """
  Subscribe `subscriber` (default: the caller) to events committed from now
  on. Returns a handle for `unsubscribe/2`. Option `transform`: a function
  applied to each list of events before it is sent.
  """
  @spec subscribe(atom(), selector(), pid(), keyword()) ::
          {:ok, subscription()} | {:error, term()}
  def subscribe(store, {type, selector}, subscriber \\ self(), opts \\ []) do
    transform = opts[:transform]

    with {:ok, s} <- Store.fetch(store),
         {:ok, source, filter} <- Selector.resolve(type, selector) do
      # the NIF's own messages are the subscriber's when nothing needs
      # filtering, reshaping or deserializing in Elixir
      direct = filter == nil and transform == nil and EventCodec.format(s) == {EventRecord, true}

      cond do
        node(subscriber) != node() ->
          Relay.subscribe(s, supervisor(store), source, filter, subscriber, transform || (& &1))
          |> case do
            {:ok, handle} -> {:ok, {:transient, handle}}
            error -> error
          end

        direct ->
          case :ex_esdb_nif.subscribe(s.handle, subscriber, source, EventCodec.format(s)) do
            {:ok, member, _last} -> {:ok, {:transient, member}}
            {:error, _} = error -> error
          end

        true ->
          spec = {Forwarder, {s, source, filter, subscriber, transform || (& &1)}}

          case DynamicSupervisor.start_child(supervisor(store), spec) do
            {:ok, pid} -> {:ok, {:transient, pid}}
            {:error, _} = error -> error
          end
      end
    end
  end

  @doc """
  Subscribe to the persistent subscription `name`, creating it on first
  use. Options: `start_from`, `buffer_size`, `concurrency_limit`,
  `partition_by`; `transform` (a function applied to each list of events
  before it is sent) and `ack_key` (the field of an acked event that holds
  its cursor) for callers that hand out events of another shape.
  """
  @spec subscribe_to(atom(), String.t(), selector(), pid(), keyword()) ::
          {:ok, pid()} | {:error, term()}
  def subscribe_to(store, name, selector, subscriber \\ self(), opts \\ [])
      when is_binary(name) and name != "" do
    with {:ok, s} <- Store.fetch(store),
         {type, value} <- selector,
         {:ok, _, _} <- Selector.resolve(type, value) do
      spec = {Persistent, {s, name, selector, subscriber, opts}}

      case DynamicSupervisor.start_child(supervisor(store), spec) do
        {:ok, pid} -> {:ok, pid}
        {:error, {:already_started, pid}} -> GenServer.call(pid, {:subscribe, subscriber, opts})
        {:error, _} = error -> error
      end
    else
      {:error, _} = error -> error
      other -> {:error, {:invalid_selector, other}}
    end
  end

  @doc """
  Acknowledge `event` (an `%ExESDB.EventRecord{}` or its cursor: stream
  version for a stream selector, global position otherwise) and every
  event before it. Call it from the subscriber.
  """
  @spec ack_event(atom(), pid(), ExESDB.EventRecord.t() | non_neg_integer()) :: :ok
  def ack_event(_store, subscription, %ExESDB.EventRecord{} = event) when is_pid(subscription),
    do: GenServer.cast(subscription, {:ack_record, self(), event})

  def ack_event(_store, subscription, cursor) when is_pid(subscription) and is_integer(cursor) do
    GenServer.cast(subscription, {:ack, self(), cursor})
  end

  @doc "Stop a subscription; a persistent one keeps its checkpoint."
  @spec unsubscribe(atom(), subscription()) :: :ok | {:error, term()}
  def unsubscribe(_store, {:transient, {relay, member}}) when is_pid(relay),
    do: Relay.unsubscribe(relay, member)

  def unsubscribe(store, {:transient, pid}) when is_pid(pid),
    do: DynamicSupervisor.terminate_child(supervisor(store), pid)

  def unsubscribe(store, {:transient, member}) do
    with {:ok, s} <- Store.fetch(store) do
      case :ex_esdb_nif.unsubscribe(s.handle, member) do
        :ok -> :ok
        {:error, :not_found} -> {:error, :subscription_not_found}
        error -> error
      end
    end
  end

  def unsubscribe(_store, pid) when is_pid(pid) do
    GenServer.call(pid, :unsubscribe)
  catch
    :exit, _ -> :ok
  end

  @doc "Delete a persistent subscription and its checkpoint."
  @spec delete_subscription(atom(), String.t()) :: :ok | {:error, term()}
  def delete_subscription(store, name) do
    with {:ok, s} <- Store.fetch(store) do
      case Registry.lookup(Persistent.registry(store), name) do
        [{pid, _}] -> unsubscribe(store, pid)
        [] -> :ok
      end

      ref = make_ref()

      with :ok <- :ex_esdb_nif.checkpoint_delete(s.handle, ref, name) do
        receive do
          {^ref, :ok} -> :ok
          {^ref, {:error, :not_found}} -> {:error, :subscription_not_found}
          {^ref, error} -> error
        after
          s.timeout -> {:error, :timeout}
        end
      end
    end
  end

  @doc """
  The persistent subscriptions the store knows: name, selector, checkpoint
  and whether one is running.
  """
  @spec get_subscriptions(atom()) :: {:ok, [map()]} | {:error, term()}
  def get_subscriptions(store) do
    with {:ok, s} <- Store.fetch(store),
         {:ok, list} <- :ex_esdb_nif.checkpoint_list(s.handle, nil, 10_000) do
      {:ok,
       for {name, checkpoint, definition, updated_us} <- list do
         %{selector: selector} = :erlang.binary_to_term(definition, [:safe])

         %{
           name: name,
           selector: selector,
           checkpoint: checkpoint,
           updated_at: DateTime.from_unix!(updated_us, :microsecond),
           running: Registry.lookup(Persistent.registry(store), name) != []
         }
       end}
    end
  end

  @doc false
  def supervisor(store), do: :"exesdb_subscriptions_#{store}"
end
