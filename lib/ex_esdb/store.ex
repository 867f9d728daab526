defmodule ExESDB.Store do
  @moduledoc false
  # Owns a store's backend handle: opens it at start, closes it at stop,
  # and publishes it in :persistent_term so callers reach the backend
  # directly, never through this process. `backend` is the
  # ExESDB.Backend implementation that holds `handle`.
  use GenServer

  defstruct [:store_id, :backend, :handle, :serializer, :timeout, :path, :limits]

  @type t :: %__MODULE__{}

  def start_link(options),
    do: GenServer.start_link(__MODULE__, options, name: :"exesdb_store_#{options.store_id}")

  def child_spec(options),
    do: %{id: __MODULE__, start: {__MODULE__, :start_link, [options]}, shutdown: 30_000}

  @doc "The running store named `store_id`."
  @spec fetch(atom()) :: {:ok, t()} | {:error, :store_not_started}
  def fetch(store_id) do
    case :persistent_term.get({__MODULE__, store_id}, nil) do
      nil -> {:error, :store_not_started}
      store -> {:ok, store}
    end
  end

  @impl true
  def init(options) do
    Process.flag(:trap_exit, true)
    close_orphan(options.store_id)
    path = ExESDB.Options.store_path(options)

    backend =
      cond do
        # a module set after Options (a test's: test/support/gated_backend.ex)
        mod = Map.get(options, :backend_module) -> mod
        Map.get(options, :backend) == :cnode -> ExESDB.Backend.CNode
        Map.get(options, :db_type) == :cluster -> ExESDB.Backend.Cluster
        true -> ExESDB.Backend.NIF
      end

    open_opts =
      Map.merge(
        %{
          durability: options.durability,
          map_size: options.map_size,
          file_mode: options.file_mode,
          create: true,
          # named to a process refused the store (it is locked)
          owner: Atom.to_string(node())
        },
        Map.new(options.limits)
      )
      |> Map.merge(cluster_opts(options, path))
      |> Map.merge(cnode_opts(options))

    case open(backend, path, open_opts, options) do
      {:ok, handle} ->
        # The store's limits (its stored ones) do not change while open.
        {:ok, limits} = backend.limits(handle)

        store = %__MODULE__{
          store_id: options.store_id,
          backend: backend,
          handle: handle,
          serializer: options.serializer,
          timeout: options.timeout,
          path: path,
          limits: limits
        }

        :persistent_term.put({__MODULE__, options.store_id}, store)
        {:ok, store}

      {:error, reason} ->
        {:stop, {:cannot_open_store, path, explain(path, reason)}}
    end
  end

  # A cluster replica whose raft state or store cannot be read (a corrupt
  # segment or metadata file; raft 0.22.1 refusing a log that ends before
  # its snapshot, canonical/raft #199) comes back from a copy of a member's
  # store under a new id, when a running member records it
  # (ExESDB.Cluster.Seeding.set_aside/2).
  defp open(backend, path, open_opts, options) do
    case backend.open(path, open_opts) do
      {:error, {:corrupt, _}} = e when backend == ExESDB.Backend.Cluster ->
        case ExESDB.Cluster.Seeding.set_aside(options, path) do
          :ok -> backend.open(path, Map.merge(open_opts, cluster_opts(options, path)))
          :no -> e
        end

      other ->
        other
    end
  end

  # A cluster store's replica configuration (ExESDB.Cluster's bootstrap
  # rule; ExESDB.Cluster.Seeding when this node has no raft state or a
  # copy of a member's store waits to be installed).
  defp cluster_opts(%{db_type: :cluster} = options, path) do
    config = ExESDB.Cluster.Seeding.prepare(options, path, ExESDB.Cluster.config(options))

    %{
      cluster: %{
        store_id: options.store_id,
        config: config,
        path: path,
        file_mode: options.file_mode
      }
    }
  end

  defp cluster_opts(_options, _path), do: %{}

  # Which C node serves a store on the C node backend.
  defp cnode_opts(%{backend: :cnode} = options),
    do: %{
      cnode: %{
        node: ExESDB.Backend.CNode.node_name(options),
        store_id: options.store_id,
        cluster: Map.get(options, :cnode_cluster, [])
      }
    }

  defp cnode_opts(_options), do: %{}

  # A Store that died without terminate/2 (killed) left its handle open
  # and published: the store would stay open for writes through the API
  # and refuse this open (:already_open). Running init, this process holds
  # the store's registered name, so no other Store owns that handle.
  defp close_orphan(store_id) do
    case fetch(store_id) do
      {:ok, orphan} ->
        :persistent_term.erase({__MODULE__, store_id})
        orphan.backend.close(orphan.handle)

      {:error, _} ->
        :ok
    end
  end

  # The core reports a path through a file as a bare system error: name
  # the file that is in the way instead.
  defp explain(path, reason) do
    case Enum.find(ancestors(path), &(File.exists?(&1) and not File.dir?(&1))) do
      nil -> reason
      file -> {:not_a_directory, file}
    end
  end

  # "a/b/c" -> ["a", "a/b", "a/b/c"]
  defp ancestors(path) do
    path
    |> Path.split()
    |> Enum.scan(&Path.join(&2, &1))
  end

  @impl true
  def terminate(_reason, store) do
    :persistent_term.erase({__MODULE__, store.store_id})
    store.backend.close(store.handle)
  end
end
