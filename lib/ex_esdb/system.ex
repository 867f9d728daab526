defmodule ExESDB.System do
  @moduledoc """
  The supervisor an application adds to its tree, one per store:

      children = [{ExESDB.System, store_id: :orders, data_dir: "/var/lib/orders"}]

  Options are resolved by `ExESDB.Options` (application config,
  `EX_ESDB_*` environment variables, then these, which win). Several systems with
  different `store_id`s run side by side in one VM, isolated.
  """
  use Supervisor

  @doc "Start the system for the store the options name."
  @spec start_link(keyword()) :: Supervisor.on_start()
  def start_link(opts \\ []) do
    options = ExESDB.Options.resolve(opts)
    Supervisor.start_link(__MODULE__, options, name: system_name(options.store_id))
  end

  @doc """
  The registered name of a store's system.

      iex> ExESDB.System.system_name(:orders)
      :exesdb_system_orders
  """
  @spec system_name(atom()) :: atom()
  def system_name(store_id), do: :"exesdb_system_#{store_id}"

  @doc false
  @spec child_spec(keyword()) :: Supervisor.child_spec()
  def child_spec(opts) do
    store_id = Keyword.get(opts, :store_id) || ExESDB.Options.resolve(opts).store_id

    %{
      id: system_name(store_id),
      start: {__MODULE__, :start_link, [opts]},
      type: :supervisor
    }
  end

  @doc "Stop a store's system (closing the store)."
  @spec stop(atom()) :: :ok
  def stop(store_id), do: Supervisor.stop(system_name(store_id))

  @impl true
  def init(options) do
    store = options.store_id

    children =
      [
        {ExESDB.Store, options},
        {Registry, keys: :unique, name: ExESDB.Subscriptions.Persistent.registry(store)},
        {DynamicSupervisor, name: ExESDB.Subscriptions.supervisor(store), strategy: :one_for_one},
        ExESDB.Subscriptions.Broadcaster.child_spec_for(options)
      ]
      |> Enum.reject(&is_nil/1)

    Supervisor.init(children, strategy: :rest_for_one)
  end
end
