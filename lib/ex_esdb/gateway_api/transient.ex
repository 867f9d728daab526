defmodule ExESDB.GatewayAPI.Transient do
  @moduledoc false
  # Holds a transient subscription made by GatewayAPI.save_subscription/6,
  # registered in the store's registry under {:gateway_api, selector,
  # subscriber}: the original API names a transient subscription by its
  # type and selector only (remove_subscription/4 takes no handle), so the
  # handle must live somewhere that name can find it. It ends the
  # subscription when removed, when its subscriber exits, and with the
  # store.
  use GenServer, restart: :temporary

  alias ExESDB.Subscriptions

  @doc "Subscribe `subscriber` once per selector: :ok or {:error, reason}."
  def start(store, selector, subscriber) do
    if holders(store, selector, subscriber) != [] do
      :ok
    else
      with {:ok, handle} <- Subscriptions.subscribe(store, selector, subscriber, credit: :infinity) do
        # subscribed first (here, not in init: subscribe may start a child
        # of the same supervisor), held after
        case Subscriptions.start_child(store, {__MODULE__, {store, selector, subscriber, handle}}) do
          {:ok, _} ->
            :ok

          {:error, {:already_started, _}} ->
            Subscriptions.unsubscribe(store, handle)
            :ok

          {:error, _} = e ->
            Subscriptions.unsubscribe(store, handle)
            e
        end
      end
    end
  end

  @doc "End every held subscription of `selector` (any subscriber): :ok."
  def stop_all(store, selector) do
    # each gone before this returns: a save right after holds anew
    for pid <- holders(store, selector, :_) do
      try do
        GenServer.stop(pid)
      catch
        # it ended meanwhile (its subscriber exited): nothing left to end
        :exit, _ -> :ok
      end
    end

    :ok
  end

  # The holders of `selector` for `subscriber` (:_ for any).
  defp holders(store, selector, subscriber) do
    Registry.select(Subscriptions.registry(store), [
      {{{:gateway_api, :"$1", :"$2"}, :"$3", :_}, [], [{{:"$1", :"$2", :"$3"}}]}
    ])
    |> Enum.filter(fn {sel, sub, _} -> sel === selector and subscriber in [:_, sub] end)
    |> Enum.map(&elem(&1, 2))
    # (an entry outlives its process until the registry handles the exit)
    |> Enum.filter(&Process.alive?/1)
  rescue
    # no registry: the store is not started on this node
    ArgumentError -> []
  end

  def start_link({store, selector, subscriber, _} = arg) do
    name = {:via, Registry, {Subscriptions.registry(store), {:gateway_api, selector, subscriber}}}
    GenServer.start_link(__MODULE__, arg, name: name)
  end

  @impl true
  def init({store, _selector, subscriber, handle}) do
    # terminate/2 ends the subscription when the store's supervisor stops
    Process.flag(:trap_exit, true)
    Process.monitor(subscriber)
    {:ok, %{store: store, handle: handle}}
  end

  @impl true
  def handle_info({:DOWN, _, :process, _, _}, state), do: {:stop, :normal, state}
  def handle_info({:EXIT, _, reason}, state), do: {:stop, reason, state}
  def handle_info(_, state), do: {:noreply, state}

  @impl true
  def terminate(_reason, state) do
    Subscriptions.unsubscribe(state.store, state.handle)
    :ok
  end
end
