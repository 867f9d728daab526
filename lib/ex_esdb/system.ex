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

  @doc """
  A running store's counters: `events` (the last global position),
  `streams`, `event_types`, `snapshots`, `checkpoints`, `bytes_used`,
  `map_size`, `commits` (write transactions since it opened),
  `subscribers` (memberships of the store's subscriber groups held now:
  one per transient, relayed or persistent subscription, and one for the
  PubSub broadcaster; a subscriber that died no longer counts once the
  store saw it go) and `store_failed` (`nil`, or why the store stopped taking writes after a
  failed flush: see README, "Durability").
  """
  @spec stats(atom()) :: {:ok, map()} | {:error, term()}
  def stats(store), do: with_store(store, & &1.backend.stats(&1))

  @doc """
  Check every record's checksum and that every index agrees with the
  events, while the store goes on: `:ok`, or `{:error, {:corrupt,
  problems}}`. Run it when you suspect the disk; `priv/ex_esdb_ctl
  verify` does the same from the shell on a store no VM has open.
  """
  @spec verify(atom()) :: :ok | {:error, term()}
  def verify(store), do: with_store(store, & &1.backend.verify(&1))

  @doc """
  Write a consistent, compacted copy of a running store into `dest`
  (a directory that is absent or empty; missing parents are made) while
  writers go on; the copy is flushed to disk before `:ok`. The copy is a store directory: open it
  with `data_dir: Path.dirname(dest)` and `store_id:
  Path.basename(dest)`, or `:ex_esdb.open(dest, ...)`.
  """
  @spec backup(atom(), Path.t()) :: :ok | {:error, term()}
  def backup(_store, dest) when not is_binary(dest), do: {:error, {:invalid_path, dest}}

  def backup(store, dest) do
    with_store(store, fn s ->
      # the copy's parent directories are made as for the store itself
      case File.mkdir_p(Path.dirname(dest)) do
        :ok -> s.backend.backup(s, dest)
        {:error, reason} -> {:error, {:cannot_create, Path.dirname(dest), reason}}
      end
    end)
  end

  defp with_store(store, fun) when is_atom(store) do
    with {:ok, s} <- ExESDB.Store.fetch(store), do: fun.(s)
  end

  defp with_store(store, _fun), do: {:error, {:invalid_store, store}}

  @impl true
  def init(options) do
    store = options.store_id

    children =
      (ExESDB.Backend.CNode.children(options) ++
         [
           {ExESDB.Store, options},
           {Registry, keys: :unique, name: ExESDB.Subscriptions.registry(store)},
           {DynamicSupervisor,
            name: ExESDB.Subscriptions.supervisor(store), strategy: :one_for_one},
           ExESDB.Subscriptions.Placement.child_spec_for(options),
           ExESDB.Subscriptions.Broadcaster.child_spec_for(options)
         ] ++ ExESDB.Backend.CNode.late_children(options))
      |> Enum.reject(&is_nil/1)

    Supervisor.init(children, strategy: :rest_for_one)
  end
end
