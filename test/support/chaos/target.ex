defmodule ExESDB.Chaos.Target do
  @moduledoc false
  # How the workload reaches a store on a node. The cluster tests give
  # their own module (gateway appends, linearizable reads, raw replica
  # reads); ExESDB.Chaos.Target.Local is the single-node store through the
  # public Elixir API, on this node or over :erpc.

  alias ExESDB.NewEvent

  @type node_name :: node()
  @type event :: %{
          event_id: String.t(),
          stream_id: String.t(),
          version: pos_integer(),
          position: pos_integer()
        }

  @doc """
  {:ok, version} or {:ok, version, position} (position of the first
  event), or {:error, reason}. Options: `retry: true` when these events
  were sent before with an unknown outcome (ExESDB.Streams, "Retries").
  """
  @callback append(node_name, store :: atom(), String.t(), term(), [NewEvent.t()], keyword()) ::
              term()
  @doc "The stream's event ids from version 1, in order ({:ok, []} when absent)."
  @callback read_stream(node_name, atom(), String.t()) :: {:ok, [String.t()]} | {:error, term()}
  @doc "Whether read_stream/3 is linearizable (:linearizable) or may lag (:local)."
  @callback consistency() :: :linearizable | :local
  @doc "The replica's $all and every stream, as the checker takes them."
  @callback final_state(node_name, atom()) :: %{all: [event], streams: %{String.t() => [event]}}
  @doc "Join persistent subscription `name` with `pid` as subscriber, from the origin."
  @callback subscribe(node_name, atom(), String.t(), term(), pid()) ::
              {:ok, term()} | {:error, term()}
  @doc "subscribe/5 with more subscribe_to options (partition_by, follow_leader, ...)."
  @callback subscribe(node_name, atom(), String.t(), term(), pid(), keyword()) ::
              {:ok, term()} | {:error, term()}
  @doc "Acknowledge `event`; called by the subscriber itself."
  @callback ack(node_name, atom(), term(), term()) :: term()
  @doc "read_stream/3, linearizable (consistency: :linearizable: a barrier, then the read)."
  @callback barrier_read(node_name, atom(), String.t()) :: {:ok, [String.t()]} | {:error, term()}
  @optional_callbacks subscribe: 6, barrier_read: 3

  @doc "Run `fun` of this module on `node`: here directly, elsewhere through :erpc."
  def on(node, mod, fun, args) when node == node(), do: apply(mod, fun, args)
  def on(node, mod, fun, args), do: :erpc.call(node, mod, fun, args, 60_000)
end

defmodule ExESDB.Chaos.Target.Local do
  @moduledoc false
  @behaviour ExESDB.Chaos.Target

  alias ExESDB.{Streams, Subscriptions}
  import ExESDB.Chaos.Target, only: [on: 4]

  @page 1000

  @impl true
  def append(node, store, stream, expected, events, opts),
    do: on(node, Streams, :append_events, [store, stream, expected, events, opts])

  @impl true
  def read_stream(node, store, stream), do: on(node, __MODULE__, :stream_ids, [store, stream])

  @impl true
  def consistency, do: :linearizable

  @impl true
  def final_state(node, store), do: on(node, __MODULE__, :state, [store])

  @impl true
  def subscribe(node, store, name, selector, pid),
    do: subscribe(node, store, name, selector, pid, [])

  @impl true
  def subscribe(node, store, name, selector, pid, opts),
    do:
      on(node, Subscriptions, :subscribe_to, [
        store,
        name,
        selector,
        pid,
        [start_from: :origin] ++ opts
      ])

  # Here, by the subscriber: an ack names its caller as the subscriber
  # (made over :erpc, it named the erpc process and was ignored).
  @impl true
  def ack(_node, store, sub, event), do: Subscriptions.ack_event(store, sub, event)

  @impl true
  def barrier_read(node, store, stream),
    do: on(node, __MODULE__, :barrier_stream_ids, [store, stream])

  @doc false
  def barrier_stream_ids(store, stream),
    do: stream_ids(store, stream, consistency: :linearizable)

  @doc false
  def stream_ids(store, stream, opts \\ []) do
    case Streams.stream_forward(store, stream, 1, @page, [decode: false] ++ opts) do
      {:ok, evs} -> {:ok, Enum.map(evs, & &1.event_id)}
      {:error, :stream_not_found} -> {:ok, []}
      {:error, _} = error -> error
    end
  end

  @doc false
  def state(store) do
    {:ok, all} = Streams.all_forward(store, 1, @page, decode: false)
    {:ok, ids} = Streams.get_streams(store)

    streams =
      Map.new(ids, fn id ->
        {:ok, evs} = Streams.stream_forward(store, id, 1, @page, decode: false)
        {id, Enum.map(evs, &event/1)}
      end)

    %{all: Enum.map(all, &event/1), streams: streams}
  end

  defp event(e),
    do: %{
      event_id: e.event_id,
      stream_id: e.stream_id,
      version: e.stream_version,
      position: e.position
    }
end
