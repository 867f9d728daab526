defmodule ExESDB.Subscriptions.Broadcaster do
  @moduledoc false
  # With `pub_sub:` configured, every committed event is also broadcast
  # through a Phoenix.PubSub-compatible module: {:events, records} on
  # "<store>:$all" and, per stream, on "<store>:<stream_id>".
  # `pub_sub: name` uses Phoenix.PubSub when it is loaded;
  # `pub_sub: {module, name}` any module with broadcast/3.
  use GenServer
  require Logger

  def start_link(options),
    do: GenServer.start_link(__MODULE__, options, spawn_opt: ExESDB.Subscriptions.spawn_opt())

  @doc "The child spec, or nil when no pub_sub is configured or loaded."
  def child_spec_for(%{pub_sub: nil}), do: nil

  def child_spec_for(%{pub_sub: {module, _name}} = options) when is_atom(module),
    do: %{id: __MODULE__, start: {__MODULE__, :start_link, [options]}}

  def child_spec_for(%{pub_sub: name} = options) when is_atom(name) do
    if Code.ensure_loaded?(Phoenix.PubSub) do
      child_spec_for(%{options | pub_sub: {Phoenix.PubSub, name}})
    else
      Logger.warning("ExESDB pub_sub #{inspect(name)} configured but Phoenix.PubSub is not loaded")
      nil
    end
  end

  @impl true
  def init(options) do
    {:ok, store} = ExESDB.Store.fetch(options.store_id)

    case store.backend.subscribe(store, self(), :all, []) do
      {:ok, member, _last} -> {:ok, %{store: store, pub_sub: options.pub_sub, member: member}}
      {:error, reason} -> {:stop, reason}
    end
  end

  # The store ended the membership (a C node that went down; its session
  # ends every member): join again once it is back. What was committed
  # meanwhile is not broadcast (broadcasts are at most once). Crashing
  # instead would restart this process while the C node is away, and
  # soon exhaust the store's system's restarts.
  @impl true
  def handle_info({:subscription_down, {:transient, member}, _}, %{member: member} = state) do
    send(self(), :resubscribe)
    {:noreply, %{state | member: nil}}
  end

  def handle_info(:resubscribe, %{member: nil, store: store} = state) do
    case store.backend.subscribe(store, self(), :all, []) do
      {:ok, member, _last} ->
        {:noreply, %{state | member: member}}

      {:error, _} ->
        Process.send_after(self(), :resubscribe, 100)
        {:noreply, state}
    end
  end

  def handle_info({:events, records}, %{pub_sub: {module, name}} = state) do
    records = ExESDB.EventCodec.finish(records, state.store)

    prefix = "#{state.store.store_id}:"
    module.broadcast(name, prefix <> "$all", {:events, records})

    records
    |> Enum.group_by(& &1.stream_id)
    |> Enum.each(fn {stream, evs} -> module.broadcast(name, prefix <> stream, {:events, evs}) end)

    {:noreply, state}
  end
end
