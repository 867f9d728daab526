defmodule ExESDB.Subscriptions.Relay do
  @moduledoc false
  # One per remote node and store: the emitter reaches local pids only, so
  # the transient subscriptions of processes on another node are emitter
  # members held by this local process (tagged, one membership each) and
  # forwarded. It monitors each subscriber and drops it when it goes (or
  # its node does); it stops when it has no subscriber left.
  use GenServer, restart: :temporary

  alias ExESDB.Subscriptions.Forwarder
  require Logger

  def start_link({store, node}),
    do:
      GenServer.start_link(__MODULE__, store,
        name: via(store.store_id, node),
        spawn_opt: ExESDB.Subscriptions.spawn_opt()
      )

  defp via(store_id, node),
    do: {:via, Registry, {ExESDB.Subscriptions.registry(store_id), {:relay, node}}}

  @doc "Subscribe `subscriber` (on `node`) through the node's relay."
  def subscribe(store, store_id, source, filter, subscriber, transform, credit) do
    node = node(subscriber)

    with {:ok, pid} <- relay(store, store_id, node) do
      # No timeout: a call that timed out would still be served later, and
      # a retry would subscribe twice.
      add = {:add, source, filter, subscriber, transform, credit}

      try do
        with {:ok, member} <- GenServer.call(pid, add, :infinity),
             do: {:ok, {pid, member}}
      catch
        # the relay stopped between lookup and call: start one and try again
        :exit, {reason, _} when reason in [:noproc, :normal, :shutdown] ->
          subscribe(store, store_id, source, filter, subscriber, transform, credit)
      end
    end
  end

  # The node's relay, started when there is none. A supervisor that is gone
  # (the store's system stopping) is {:error, :store_not_started}, not a
  # reason to try again.
  defp relay(store, store_id, node) do
    case ExESDB.Subscriptions.start_child(store_id, {__MODULE__, {store, node}}) do
      {:ok, pid} -> {:ok, pid}
      {:error, {:already_started, pid}} -> {:ok, pid}
      {:error, _} = error -> error
    end
  end

  @doc "Pass a relayed subscriber's grant on to its membership."
  def grant(pid, member, n) do
    GenServer.call(pid, {:grant, member, n})
  catch
    :exit, _ -> {:error, :subscription_not_found}
  end

  @doc "End one relayed subscription."
  def unsubscribe(pid, member) do
    GenServer.call(pid, {:remove, member})
  catch
    :exit, _ -> {:error, :subscription_not_found}
  end

  @impl true
  def init(store) do
    # terminate/2 tells the subscribers when the store's system stops
    Process.flag(:trap_exit, true)
    {:ok, %{store: store, entries: %{}}}
  end

  @impl true
  def terminate(reason, state) when reason != :normal do
    for {member, entry} <- state.entries,
        do: send(entry.subscriber, {:subscription_down, {:transient, {self(), member}}, :closed})
  end

  def terminate(_reason, _state), do: :ok

  @impl true
  def handle_call({:add, source, filter, subscriber, transform, credit}, _from, state) do
    store = state.store

    case store.backend.subscribe(store, self(), source, shape: :tagged, credit: credit) do
      {:ok, member, _last} ->
        ref = Process.monitor(subscriber)
        entry = %{filter: filter, subscriber: subscriber, transform: transform, ref: ref}
        {:reply, {:ok, member}, put_in(state.entries[member], entry)}

      {:error, _} = error ->
        {:reply, error, state}
    end
  end

  def handle_call({:grant, member, n}, _from, state) do
    if Map.has_key?(state.entries, member),
      do: {:reply, state.store.backend.grant(state.store, member, n), state},
      else: {:reply, {:error, :subscription_not_found}, state}
  end

  def handle_call({:remove, member}, _from, state) do
    case Map.pop(state.entries, member) do
      {nil, _} ->
        {:reply, {:error, :subscription_not_found}, state}

      {entry, entries} ->
        Process.demonitor(entry.ref, [:flush])
        state.store.backend.unsubscribe(state.store, member)
        stop_when_empty(:ok, %{state | entries: entries})
    end
  end

  @impl true
  def handle_info({tag, {:transient, member}, detail}, state)
      when tag in [:subscription_overflow, :subscription_down] do
    case Map.pop(state.entries, member) do
      {nil, _} ->
        {:noreply, state}

      {entry, entries} ->
        Process.demonitor(entry.ref, [:flush])
        send(entry.subscriber, {tag, {:transient, {self(), member}}, detail})
        state = %{state | entries: entries}
        if entries == %{}, do: {:stop, :normal, state}, else: {:noreply, state}
    end
  end

  def handle_info({:events, member, records}, state) do
    case state.entries do
      %{^member => entry} ->
        state = forward(state, member, entry, records)
        if state.entries == %{}, do: {:stop, :normal, state}, else: {:noreply, state}

      _ ->
        {:noreply, state}
    end
  end

  def handle_info({:DOWN, ref, :process, _pid, _reason}, state) do
    case Enum.find(state.entries, fn {_m, e} -> e.ref == ref end) do
      {member, _entry} ->
        state.store.backend.unsubscribe(state.store, member)
        state = %{state | entries: Map.delete(state.entries, member)}
        if state.entries == %{}, do: {:stop, :normal, state}, else: {:noreply, state}

      nil ->
        {:noreply, state}
    end
  end

  # Exits are trapped only so that terminate/2 runs (the parent's are
  # GenServer's own): another process's act as they would untrapped,
  # :normal ignored; stray messages are dropped.
  def handle_info({:EXIT, _from, :normal}, state), do: {:noreply, state}
  def handle_info({:EXIT, _from, reason}, state), do: {:stop, reason, state}
  def handle_info(_other, state), do: {:noreply, state}

  # One subscription failing (its transform, or a serializer that cannot
  # decode) ends that subscription alone, as its own forwarder would end
  # on a local node; the others carried by the relay go on.
  defp forward(state, member, entry, records) do
    %{filter: filter, subscriber: subscriber, transform: transform} = entry
    Forwarder.deliver(state.store, member, filter, subscriber, transform, records)
    state
  rescue
    error ->
      Logger.error(
        "ExESDB relayed subscription of #{inspect(entry.subscriber)} ended: " <>
          Exception.format(:error, error, __STACKTRACE__)
      )

      Process.demonitor(entry.ref, [:flush])
      state.store.backend.unsubscribe(state.store, member)
      send(entry.subscriber, {:subscription_down, {:transient, {self(), member}}, {:failed, error}})
      %{state | entries: Map.delete(state.entries, member)}
  end

  defp stop_when_empty(reply, %{entries: entries} = state) when entries == %{},
    do: {:stop, :normal, reply, state}

  defp stop_when_empty(reply, state), do: {:reply, reply, state}
end
