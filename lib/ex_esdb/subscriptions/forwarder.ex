defmodule ExESDB.Subscriptions.Forwarder do
  @moduledoc false
  # A transient subscription that needs Elixir between the emitter and the
  # subscriber: a pattern or payload filter, a serializer other than the
  # default, or events mapped to another shape (the Commanded adapter's).
  # (Subscribers on other nodes go through the node's Relay.) It joins the
  # emitter itself with the subscriber's credit, hands back at once the
  # credit of events its filter drops, passes the subscriber's grants on,
  # and tells the subscriber, under its own handle, when the membership
  # overflows or the store stops. It monitors the subscriber (no link) and
  # ends when the subscriber does.
  use GenServer, restart: :temporary

  alias ExESDB.Subscriptions.Selector

  def start_link(args),
    do: GenServer.start_link(__MODULE__, args, spawn_opt: ExESDB.Subscriptions.spawn_opt())

  @impl true
  def init({store, source, filter, subscriber, transform, credit}) do
    # terminate/2 tells the subscriber when the store's system stops
    Process.flag(:trap_exit, true)
    Process.monitor(subscriber)

    case store.backend.subscribe(store, self(), source, credit: credit) do
      {:ok, member, _last} ->
        {:ok,
         %{
           store: store,
           member: member,
           filter: filter,
           subscriber: subscriber,
           transform: transform
         }}

      {:error, reason} ->
        {:stop, reason}
    end
  end

  @impl true
  def handle_call({:grant, n}, _from, state) do
    {:reply, state.store.backend.grant(state.store, state.member, n), state}
  end

  def handle_call(:unsubscribe, _from, state), do: {:stop, :normal, :ok, state}

  @impl true
  def handle_info({:events, records}, state) do
    %{store: store, member: member, filter: filter} = state
    deliver(store, member, filter, state.subscriber, state.transform, records)
    {:noreply, state}
  end

  def handle_info({tag, {:transient, _member}, detail}, state)
      when tag in [:subscription_overflow, :subscription_down] do
    send(state.subscriber, {tag, {:transient, self()}, detail})
    {:stop, :normal, state}
  end

  def handle_info({:DOWN, _, :process, pid, _}, %{subscriber: pid} = state),
    do: {:stop, :normal, state}

  # Exits are trapped only so that terminate/2 runs (the parent's are
  # GenServer's own): another process's act as they would untrapped,
  # :normal ignored; stray messages are dropped.
  def handle_info({:EXIT, _from, :normal}, state), do: {:noreply, state}
  def handle_info({:EXIT, _from, reason}, state), do: {:stop, reason, state}
  def handle_info(_other, state), do: {:noreply, state}

  @doc false
  # A delivery to a member's subscriber (the Relay's too): what the filter
  # keeps goes to the subscriber, transformed; the credit of what it drops
  # never reaches the subscriber, so it comes back at once.
  def deliver(store, member, filter, subscriber, transform, records) do
    records = ExESDB.EventCodec.finish(records, store)
    {matching, dropped} = Enum.split_with(records, &Selector.match?(filter, &1))
    if dropped != [], do: store.backend.grant(store, member, length(dropped))
    if matching != [], do: send(subscriber, {:events, transform.(matching)})
    :ok
  end

  # The store's system stopping shuts it down (:closed); anything else that
  # ends it (a transform or serializer that raised) is its failure.
  @impl true
  def terminate(:normal, _state), do: :ok

  def terminate(reason, state) do
    why =
      case reason do
        :shutdown -> :closed
        {:shutdown, _} -> :closed
        other -> {:failed, other}
      end

    send(state.subscriber, {:subscription_down, {:transient, self()}, why})
  end
end
