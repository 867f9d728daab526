defmodule ExESDB.Subscriptions.Forwarder do
  @moduledoc false
  # A transient subscription that needs Elixir between the emitter and the
  # subscriber: a pattern or payload filter, a serializer other than the
  # default, or events mapped to another shape (the Commanded adapter's).
  # (Subscribers on other nodes go through the node's Relay.) It joins the emitter itself,
  # monitors the subscriber (no link) and ends when the subscriber does.
  use GenServer, restart: :temporary

  alias ExESDB.Subscriptions.Selector

  def start_link(args),
    do: GenServer.start_link(__MODULE__, args, spawn_opt: ExESDB.Subscriptions.spawn_opt())

  @impl true
  def init({store, source, filter, subscriber, transform}) do
    Process.monitor(subscriber)

    case :ex_esdb_nif.subscribe(store.handle, self(), source, ExESDB.EventCodec.format(store)) do
      {:ok, _member, _last} ->
        {:ok,
         %{
           store: store,
           filter: filter,
           subscriber: subscriber,
           transform: transform
         }}

      {:error, reason} ->
        {:stop, reason}
    end
  end

  @impl true
  def handle_info({:events, records}, state) do
    records = ExESDB.EventCodec.finish(records, state.store)

    case Enum.filter(records, &Selector.match?(state.filter, &1)) do
      [] -> :ok
      matching -> send(state.subscriber, {:events, state.transform.(matching)})
    end

    {:noreply, state}
  end

  def handle_info({:DOWN, _, :process, pid, _}, %{subscriber: pid} = state),
    do: {:stop, :normal, state}
end
