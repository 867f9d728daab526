defmodule ExESDB.GatewayAPI do
  @moduledoc """
  The cluster API of the original (Khepri-based) ExESDB, with its names,
  arities and argument orders, so code written against it runs here, on a
  single node (`db_type: :single`) and on a cluster (`db_type: :cluster`)
  alike. Every function is a thin call into `ExESDB.Streams` or
  `ExESDB.Subscriptions`; in cluster mode those route writes to the
  leader and read this node's replica (`ExESDB.Cluster`, docs/CLUSTER.md),
  so there is no gateway process to find: call it on any node that runs
  the store.

  Where this store differs from the original, these functions answer as
  this store does (the same shapes as `ExESDB.Streams` and
  `ExESDB.Subscriptions`, README "Errors"):

    * **Versions are 1-based.** A stream's first event is version 1 and an
      absent stream is at version 0 (the original: 0 and -1).
      `get_events/5` from 0 or 1 reads from the first event. An integer
      `start_from` names the events *after* it (0: all of them), which
      are the same events the original's 0-based `start_from` names.
    * **A failed expected version** answers `{:error,
      :wrong_expected_version}` (the original: `{:error,
      {:wrong_expected_version, current}}`; read `get_version/2` for the
      current one).
    * **Events are `%ExESDB.EventRecord{}`**: the stream is `stream_id`
      (the original: `event_stream_id`), the version `event_number`.
    * **Calls answer.** `save_subscription/6`, `remove_subscription/4`
      and `ack_event/4` were casts in the original and always answered
      `:ok`; here they answer `:ok` or `{:error, reason}` once done.

  ## Subscriptions

  `type` is `:by_stream`, `:by_event_type`, `:by_event_pattern` or
  `:by_event_payload`, with the selector of `ExESDB.Subscriptions`. A
  `:by_stream` selector is `"$all"` or, as in the original, `"$"` followed
  by the stream id (`"$order-1"`); one without the `$` names the stream as
  given. The subscription name `"transient"` makes a transient
  subscription; any other name a persistent one. Subscribers receive
  `{:events, [%ExESDB.EventRecord{}]}`; a persistent subscriber first gets
  `{:subscribed, subscription_pid}` and acknowledges with `ack_event/4`.

  Transient subscriptions made here have no credit bound (the original had
  no flow control): a subscriber that cannot keep up grows its mailbox.
  Use `ExESDB.Subscriptions.subscribe/4` for a bounded one. Each lasts
  until `remove_subscription/4` with the same type and selector (which
  ends every transient subscription of that type and selector made here),
  until its subscriber exits, or until the store stops.
  """

  alias ExESDB.{Streams, Subscriptions}
  alias ExESDB.GatewayAPI.Transient
  alias ExESDB.Subscriptions.Persistent

  @type store :: atom()
  @type stream :: String.t()
  @type subscription_name :: String.t()
  @type error :: term()
  @type subscription_type :: :by_stream | :by_event_type | :by_event_pattern | :by_event_payload
  @type selector_type :: String.t() | map()

  @transient "transient"

  @doc """
  Append events at the stream's end, whatever its version (`:any`).
  `{:ok, new_version}`. See `ExESDB.Streams.append_events/5`.
  """
  @spec append_events(store(), stream(), list()) :: {:ok, pos_integer()} | {:error, error()}
  def append_events(store, stream_id, events),
    do: Streams.append_events(store, stream_id, :any, events)

  @doc """
  Append events when the stream is at `expected_version` (an integer,
  `:any`, `:no_stream` or `:stream_exists`). `{:ok, new_version}` or
  `{:error, :wrong_expected_version}`. See `ExESDB.Streams.append_events/5`.
  """
  @spec append_events(store(), stream(), Streams.expected_version(), list()) ::
          {:ok, pos_integer()} | {:error, error()}
  def append_events(store, stream_id, expected_version, events),
    do: Streams.append_events(store, stream_id, expected_version, events)

  @doc """
  Up to `count` events of a stream from `start_version`, `:forward` or
  `:backward` (from `:end` too). See `ExESDB.Streams.get_events/6`.
  """
  @spec get_events(
          store(),
          stream(),
          non_neg_integer() | :end,
          non_neg_integer(),
          Streams.direction()
        ) ::
          {:ok, [ExESDB.EventRecord.t()]} | {:error, error()}
  def get_events(store, stream_id, start_version, count, direction \\ :forward),
    do: Streams.get_events(store, stream_id, start_version, count, direction)

  @doc "The ids of every stream that exists. See `ExESDB.Streams.get_streams/1`."
  @spec get_streams(store()) :: {:ok, [stream()]} | {:error, error()}
  def get_streams(store), do: Streams.get_streams(store)

  @doc """
  The stream's version: 0 when it has no events. See
  `ExESDB.Streams.get_version/2`.
  """
  @spec get_version(store(), stream()) :: {:ok, non_neg_integer()} | {:error, error()}
  def get_version(store, stream), do: Streams.get_version(store, stream)

  @doc """
  The persistent subscriptions: name, selector, checkpoint, whether one
  runs. See `ExESDB.Subscriptions.get_subscriptions/1`.
  """
  @spec get_subscriptions(store()) :: {:ok, [map()]} | {:error, error()}
  def get_subscriptions(store), do: Subscriptions.get_subscriptions(store)

  @doc """
  Acknowledge `event` (as it was handed out, a map holding its cursor, or
  the cursor itself) and every event before it, for `subscriber_pid` of
  the persistent subscription `subscription_name`. `{:error,
  :subscription_not_found}` when no subscription of that name runs (in
  cluster mode: on the leader).
  """
  @spec ack_event(store(), subscription_name(), pid(), map() | non_neg_integer()) ::
          :ok | {:error, error()}
  def ack_event(store, subscription_name, subscriber_pid, event) do
    cond do
      not is_pid(subscriber_pid) ->
        {:error, {:invalid_subscriber, subscriber_pid}}

      not ackable?(event) ->
        {:error, {:invalid_event, event}}

      true ->
        with {:ok, pid} <- running(store, subscription_name), do: ack(pid, subscriber_pid, event)
    end
  end

  defp ackable?(event), do: is_map(event) or (is_integer(event) and event >= 0)

  defp ack(pid, subscriber, event), do: Persistent.acknowledge(pid, subscriber, event)

  # (in cluster mode the subscription runs on the leader)
  defp running(store, name) when is_binary(name) do
    Subscriptions.whereis(store, name)
  rescue
    # no registry: the store is not started on this node
    ArgumentError -> {:error, :store_not_started}
  end

  defp running(_store, name), do: {:error, {:invalid_subscription_name, name}}

  @doc """
  Subscribe `subscriber` (`nil`: the caller) to events of `type` and
  `selector`. Named `"transient"` (the default): a transient subscription
  of events committed from now on. Any other name: the persistent
  subscription of that name, created on first use, from `start_from`
  (the events after that cursor; 0, the default, is from the start). See
  the module doc and `ExESDB.Subscriptions.subscribe_to/5`.
  """
  @spec save_subscription(
          store(),
          subscription_type(),
          selector_type(),
          subscription_name(),
          non_neg_integer(),
          pid() | nil
        ) :: :ok | {:error, error()}
  def save_subscription(
        store,
        type,
        selector,
        subscription_name \\ @transient,
        start_from \\ 0,
        subscriber \\ nil
      ) do
    subscriber = subscriber || self()
    selector = selector(type, selector)

    case subscription_name do
      @transient ->
        Transient.start(store, selector, subscriber)

      name ->
        case Subscriptions.subscribe_to(store, name, selector, subscriber, start_from: start_from) do
          {:ok, _pid} -> :ok
          {:error, _} = e -> e
        end
    end
  end

  @doc """
  Remove a subscription. `"transient"`: end the transient subscriptions
  of this type and selector made by `save_subscription/6` on this node.
  Any other name: delete the persistent subscription of that name and its
  checkpoint (`ExESDB.Subscriptions.delete_subscription/2`). Removing one
  that does not exist answers `:ok`, as in the original.
  """
  @spec remove_subscription(store(), subscription_type(), selector_type(), subscription_name()) ::
          :ok | {:error, error()}
  def remove_subscription(store, type, selector, subscription_name \\ @transient) do
    case subscription_name do
      @transient ->
        Transient.stop_all(store, selector(type, selector))

      name ->
        case Subscriptions.delete_subscription(store, name) do
          {:error, :subscription_not_found} -> :ok
          reply -> reply
        end
    end
  end

  # The original's stream selector is "$" <> stream id.
  defp selector(:by_stream, "$all"), do: {:by_stream, "$all"}
  defp selector(:by_stream, "$" <> id) when id != "", do: {:by_stream, id}
  defp selector(type, selector), do: {type, selector}
end
