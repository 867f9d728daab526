defmodule ExESDB.Options do
  @moduledoc """
  Store options. Each key is looked up in four places; a later one wins:

  1. the defaults below;
  2. `config :ex_esdb, key: value` (or `config otp_app, :ex_esdb, ...`
     with the `otp_app:` option);
  3. the `EX_ESDB_*` environment variable of the key;
  4. the options given to `ExESDB.System` (the child spec).

  So the options given to `ExESDB.System` win over the environment, and
  the environment over application config. A child spec is per store
  (several stores run in one VM), so what it says explicitly is not
  overridden; an application that wants the environment to decide a key
  leaves that key out of its child spec.

  | key | env | default | |
  |---|---|---|---|
  | `data_dir` | `EX_ESDB_DATA_DIR` | `"data"` | the directory stores live in: a store is `data_dir/store_id/` |
  | `store_id` | `EX_ESDB_STORE_ID` | `:ex_esdb` | names the store in every call and its directory: letters, digits, `_`, `-`, `.`, not first `.` or `-`, at most 200 |
  | `db_type` | `EX_ESDB_DB_TYPE` | `:single` | `:single`, or `:cluster` (a raft cluster of the `seed_nodes`; needs raft built, `make raft`; see Cluster mode) |
  | `timeout` | `EX_ESDB_TIMEOUT` | `10_000` | ms to wait for a write's acknowledgement (below 2^32) |
  | `seed_nodes` | `EX_ESDB_SEED_NODES` | `[]` | node names (atoms, or strings such as `"a@h1"`); the variable is comma-separated (cluster) |
  | `raft_port` | `EX_ESDB_RAFT_PORT` | `7420` | the TCP port raft listens on, on every node unless `raft_addresses` says otherwise (cluster) |
  | `raft_bind` | `EX_ESDB_RAFT_BIND` | `"127.0.0.1"` | the interface (IP) raft listens on; raft traffic is not authenticated: loopback or a private network only (cluster) |
  | `raft_addresses` | `EX_ESDB_RAFT_ADDRESSES` | `%{}` | node => `"ip:port"` where other nodes reach its raft (default: the host of the node's name and `raft_port`); the variable is `node=ip:port,...` (cluster) |
  | `election_timeout` | `EX_ESDB_ELECTION_TIMEOUT` | `1000` | ms a follower waits for the leader before an election (between 1 and 2 times this; 2 to 3 heartbeats for the first of the others in id order after the leader's process dies and its connection closes) (cluster) |
  | `join` | `EX_ESDB_JOIN` | `false` | `true`: this node, not a seed, joins the cluster the seeds formed once a member adds it (`ExESDB.Cluster.add/2`) (cluster) |
  | `initial_cluster` | `EX_ESDB_INITIAL_CLUSTER` | `:auto` | when a seed with no raft state writes the seed list's configuration (the first formation): `:auto` once every other seed's VM answers; `:new` (no cluster existed) once a majority of the seeds start with no raft state; `:existing` never (it only joins a running cluster). See Cluster mode (cluster) |
  | `heartbeat` | `EX_ESDB_HEARTBEAT` | `100` | ms between the leader's heartbeats; below `election_timeout` (cluster) |
  | `snapshot_threshold` | | `16384` | raft entries between raft's (marker) snapshots; fewer is for tests (cluster) |
  | `snapshot_trailing_bytes` | | `1073741824` | bytes of raft entries kept after a snapshot for lagging followers (at least 128 entries of 1 MiB); a follower further behind gets a copy of a member's store (`ExESDB.Cluster.Seeding`) (cluster) |
  | `pub_sub` | `EX_ESDB_PUB_SUB` | `nil` | a Phoenix.PubSub server name, or `{module, name}` (see `ExESDB.Subscriptions`); the variable takes a module (`MyApp.PubSub`) or a lower-case atom name |
  | `durability` | `EX_ESDB_DURABILITY` | `:sync` | `:sync`: every acknowledged write survives power loss (two flushes per commit; `:strict` is its old name); `:no_meta_sync`: one flush, survives a crash of the VM, a power loss can roll back the last acknowledged commit; `:nosync`: tests only (README, "Durability") |
  | `map_size` | `EX_ESDB_MAP_SIZE` | 64 MiB | initial map; kept at least twice the used size |
  | `file_mode` | | `0o600` | mode of the store's files and backups; directories get it plus `x` where `r` (`0o700`) |
  | `serializer` | | `ExESDB.Serializer.Term` | a module implementing `ExESDB.Serializer` |
  | `limits` | | core defaults | keyword: `max_stream_id`, `max_event_type`, `max_event_bytes`, `max_append_events`, `max_append_bytes`, `max_key`, `max_queue_bytes`, `max_read_bytes` (see Limits) |
  | `backend` | `EX_ESDB_BACKEND` | `:nif` | `:nif`: the store in this VM; `:cnode`: in a C node, an OS process of its own (see C node) |
  | `cnode` | `EX_ESDB_CNODE` | `nil` | the name (`name@host`) of a C node started elsewhere that serves this store; implies `backend: :cnode` (C node) |
  | `cnode_name` | `EX_ESDB_CNODE_NAME` | `<store_id>_cnode@<this host>` | the name of the C node this system starts (C node) |
  | `cnode_listen` | `EX_ESDB_CNODE_LISTEN` | `"127.0.0.1"` | the IPv4 interface the started C node listens on (C node) |
  | `cnode_cluster` | `EX_ESDB_CNODE_CLUSTER` | `[]` | the C nodes of a raft cluster of C nodes replicating this store (`cnode` among them); writes follow their `{:not_leader, node}` answers; a launched C node named among them runs as a replica, numbered and addressed as cluster mode's seeds (`raft_*` options) (C node; the variable is comma-separated) |
  | `cnode_wiped` | `EX_ESDB_CNODE_WIPED` | `:refuse` | what a launched C node replica (named in `cnode_cluster`) does when its data directory was lost: `:refuse` exits with status 3 and is not started again; `:rejoin` comes back as a new member (its old raft id removed, a new one added, a copy pulled, then a voter; docs/CLUSTER.md) (C node) |
  | `cnode_cookie` | `EX_ESDB_CNODE_COOKIE` | `:node` | `:node`: this node's cookie, given on the C node's stdin; or the path of a file only its owner can read (mode 0400) holding the cookie (C node) |

  Everything is checked when the store starts (`ExESDB.System.start_link/1`
  raises, so the store does not start): an invalid value raises an
  `ArgumentError` naming the key, the value and where it came from
  (`config :ex_esdb`, the variable's name, or the options given to
  `ExESDB.System`); so does an unknown key in any of the three, or an
  `EX_ESDB_*` variable that is not in the table. Values from the
  environment are checked before any atom is made of them.

  ## Cluster mode

  `db_type: :cluster` makes the store one replica of a raft cluster
  formed by `seed_nodes` (see `ExESDB.Cluster`). The bootstrap rule: the
  seed list is sorted and node `i` of it (1-based) is raft member `i`,
  reached at its `raft_addresses` entry or `host:raft_port`; every seed
  started with the same `seed_nodes` (and addresses) writes that same
  initial configuration into its empty raft log, so they form one
  cluster whatever order they start in, and no start can make a second
  one. A node restarted finds its raft log in `data_dir/store_id/raft`
  and rejoins from it (the seed list is then only used for addresses).
  A node outside the seed list starts with `join: true` and an empty
  raft log, and becomes a member when a member adds it
  (`ExESDB.Cluster.add/2`).

  A seed with no raft state first asks the other seeds; when one runs
  the store it joins (or, recorded there as a member, comes back under a
  new id: a lost disk, `ExESDB.Cluster.Seeding`). With none running,
  `initial_cluster` says when it may bootstrap:

  - `:auto` (default): once every other seed's VM answers. A missing
    seed is waited for: it may be a running member that records this
    node as the voter it was.
  - `:new`: the operator states that no cluster existed. A seed
    bootstraps once a majority of the seeds (itself included) answer
    that they start with no raft state; a missing seed is not waited
    for. Set it for the first formation only (docs/CLUSTER.md says why
    it is unsafe on a wiped seed's restart and what is checked).
  - `:existing`: never bootstraps; a seed no member records comes back
    as a new member in place of its seed id.

  In every mode it waits while a node answers that its disk holds the
  store's raft state without running it: the cluster exists and this
  seed may be a member that lost its data.

  ## C node

  `backend: :cnode` runs the store in `priv/ex_esdb_cnode`, started by
  this system through a Port (its cookie on its stdin, never on its
  command line), registered with epmd as `cnode_name` and listening on
  `cnode_listen`; the system waits for its ready line, and starts it
  again when it dies. `cnode: :"name@host"` uses a C node started
  elsewhere (it serves one store; `data_dir` is then unused). The C node
  opens the store with the limits stored in it and its own map size and
  file mode: `limits:` with `backend: :cnode` raises, `map_size` and
  `file_mode` are unused. This node
  must be distributed (`--sname`/`--name`) and, for a C node started
  elsewhere, share its cookie. See `ExESDB.Backend.CNode` for what the
  extra process adds to the error table. Not with `db_type: :cluster`.

  ## Limits

  `limits:` takes any of these keys, each a positive integer:

  | limit | default | bounds |
  |---|---|---|
  | `max_stream_id` | 1024 | bytes of a stream id (at most 65,535) |
  | `max_event_type` | 512 | bytes of an event type (at most 65,535) |
  | `max_event_bytes` | 16 MiB | serialized data + metadata of one event (or snapshot, or checkpoint definition; below 4 GiB) |
  | `max_append_events` | 10,000 | events in one append (below 2^32) |
  | `max_append_bytes` | 64 MiB | serialized data + metadata of one append (below 4 GiB) |
  | `max_key` | 1024 | bytes of a snapshot `source_uuid` or a subscription name (at most 65,535) |
  | `max_queue_bytes` | 256 MiB | encoded writes waiting for the writer; beyond it a write answers `{:error, :overloaded}` (this node's, not stored) |
  | `max_read_bytes` | 16 MiB | data, metadata, stream id and type of the events in one page read (at least one event per page; `ExESDB.Streams`, "Pages"; this node's, not stored) |

  A write over a limit answers `{:error, {:limit_exceeded, key, max}}`,
  e.g. `{:error, {:limit_exceeded, :max_event_bytes, 16777216}}`, and
  writes nothing. The store records its limits, so every replica checks
  the same ones: a new store keeps those it is created with (the defaults
  for keys not given); starting an existing store with `limits:` changes
  the keys given and keeps the others as stored. Lowered limits apply to
  later writes only.
  """

  @type t :: %{
          data_dir: String.t(),
          store_id: atom(),
          db_type: :single | :cluster,
          timeout: pos_integer(),
          seed_nodes: [node()],
          raft_port: 1..65_535,
          raft_bind: String.t(),
          raft_addresses: %{node() => String.t()},
          election_timeout: pos_integer(),
          heartbeat: pos_integer(),
          snapshot_threshold: pos_integer(),
          snapshot_trailing_bytes: pos_integer(),
          join: boolean(),
          initial_cluster: :auto | :new | :existing,
          pub_sub: atom() | {module(), atom()} | nil,
          durability: :sync | :strict | :no_meta_sync | :nosync,
          map_size: pos_integer(),
          file_mode: non_neg_integer(),
          serializer: module(),
          limits: keyword(),
          backend: :nif | :cnode,
          cnode: node() | nil,
          cnode_name: node() | nil,
          cnode_listen: String.t(),
          cnode_cluster: [node()],
          cnode_wiped: :refuse | :rejoin,
          cnode_cookie: :node | String.t()
        }

  @defaults %{
    data_dir: "data",
    store_id: :ex_esdb,
    db_type: :single,
    timeout: 10_000,
    seed_nodes: [],
    raft_port: 7420,
    raft_bind: "127.0.0.1",
    raft_addresses: %{},
    election_timeout: 1000,
    heartbeat: 100,
    snapshot_threshold: 16_384,
    snapshot_trailing_bytes: 1_073_741_824,
    join: false,
    initial_cluster: :auto,
    pub_sub: nil,
    durability: :sync,
    map_size: 64 * 1024 * 1024,
    file_mode: 0o600,
    serializer: ExESDB.Serializer.Term,
    limits: [],
    backend: :nif,
    cnode: nil,
    cnode_name: nil,
    cnode_listen: "127.0.0.1",
    cnode_cluster: [],
    cnode_wiped: :refuse,
    cnode_cookie: :node
  }

  @env %{
    data_dir: "EX_ESDB_DATA_DIR",
    store_id: "EX_ESDB_STORE_ID",
    db_type: "EX_ESDB_DB_TYPE",
    timeout: "EX_ESDB_TIMEOUT",
    seed_nodes: "EX_ESDB_SEED_NODES",
    raft_port: "EX_ESDB_RAFT_PORT",
    raft_bind: "EX_ESDB_RAFT_BIND",
    raft_addresses: "EX_ESDB_RAFT_ADDRESSES",
    election_timeout: "EX_ESDB_ELECTION_TIMEOUT",
    heartbeat: "EX_ESDB_HEARTBEAT",
    join: "EX_ESDB_JOIN",
    initial_cluster: "EX_ESDB_INITIAL_CLUSTER",
    pub_sub: "EX_ESDB_PUB_SUB",
    durability: "EX_ESDB_DURABILITY",
    map_size: "EX_ESDB_MAP_SIZE",
    backend: "EX_ESDB_BACKEND",
    cnode: "EX_ESDB_CNODE",
    cnode_name: "EX_ESDB_CNODE_NAME",
    cnode_listen: "EX_ESDB_CNODE_LISTEN",
    cnode_cluster: "EX_ESDB_CNODE_CLUSTER",
    cnode_wiped: "EX_ESDB_CNODE_WIPED",
    cnode_cookie: "EX_ESDB_CNODE_COOKIE"
  }

  @limit_keys [
    :max_stream_id,
    :max_event_type,
    :max_event_bytes,
    :max_append_events,
    :max_append_bytes,
    :max_key,
    :max_queue_bytes,
    :max_read_bytes
  ]

  # The largest value of each limit the store can record.
  @limit_max %{
    max_stream_id: 65_535,
    max_event_type: 65_535,
    max_key: 65_535,
    max_event_bytes: 0xFFFFFFFF,
    max_append_bytes: 0xFFFFFFFF,
    max_append_events: 0xFFFFFFFF,
    max_queue_bytes: 0xFFFFFFFFFFFFFFFF,
    max_read_bytes: 0xFFFFFFFFFFFFFFFF
  }

  @option_source "the options given to ExESDB.System"

  @doc "The keys `resolve/1` knows."
  @spec keys() :: [atom()]
  def keys, do: Map.keys(@defaults)

  @doc """
  Resolve and validate options; raises `ArgumentError` on an invalid one.

      iex> ExESDB.Options.resolve(store_id: :demo, data_dir: "/tmp/x").store_id
      :demo
  """
  @spec resolve(keyword()) :: t()
  def resolve(opts \\ []) do
    {otp_app, opts} = Keyword.pop(opts, :otp_app)

    {config, config_source} =
      case otp_app do
        nil -> {Application.get_all_env(:ex_esdb), "config :ex_esdb"}
        app -> {Application.get_env(app, :ex_esdb, []), "config #{inspect(app)}, :ex_esdb"}
      end

    @defaults
    |> merge(keyword!(config, config_source), fn _key -> config_source end)
    |> merge(env_overrides(), &Map.fetch!(@env, &1))
    |> merge(keyword!(opts, @option_source), fn _key -> @option_source end)
    |> check_cluster!()
    |> check_cnode!()
  end

  # A C node given means the C node backend; it serves a single store.
  defp check_cnode!(%{cnode: cnode} = o) when cnode != nil,
    do: check_cnode!(%{o | backend: :cnode, cnode: nil}) |> Map.put(:cnode, cnode)

  defp check_cnode!(%{backend: :cnode, db_type: :cluster}),
    do: raise(ArgumentError, "ExESDB option :backend :cnode does not run with db_type: :cluster")

  # The C node opens its store with the store's own limits: it takes no
  # others, and a limit silently not applied would be worse than none.
  defp check_cnode!(%{backend: :cnode, limits: [_ | _] = limits}),
    do:
      raise(
        ArgumentError,
        "ExESDB option :limits #{inspect(limits)} is not applied by a C node (backend :cnode): " <>
          "it uses the limits stored in the store"
      )

  defp check_cnode!(o), do: o

  # What cluster mode needs beyond each key's own check.
  defp check_cluster!(%{db_type: :cluster} = o) do
    cond do
      o.seed_nodes == [] ->
        raise ArgumentError,
              "ExESDB option :db_type is :cluster, but seed_nodes is empty: " <>
                "list the cluster's nodes (this one among them)"

      node() not in o.seed_nodes and not o.join ->
        raise ArgumentError,
              "ExESDB option :db_type is :cluster, but this node (#{inspect(node())}) is not " <>
                "in seed_nodes #{inspect(o.seed_nodes)}; to join the cluster they form, " <>
                "set join: true and add it with ExESDB.Cluster.add/2"

      o.heartbeat >= o.election_timeout ->
        raise ArgumentError,
              "ExESDB option :heartbeat (#{o.heartbeat}) must be below :election_timeout " <>
                "(#{o.election_timeout})"

      true ->
        o
    end
  end

  defp check_cluster!(o), do: o

  @doc """
  The store's own directory: `data_dir/store_id`. This is the path
  `:ex_esdb.open/2` takes, and the CLI's `--store` (or `--data-dir
  data_dir --store-id store_id`).
  """
  @spec store_path(t()) :: String.t()
  def store_path(%{data_dir: dir, store_id: id}), do: Path.join(dir, Atom.to_string(id))

  # A store id becomes a directory name and part of registered names.
  @store_id ~r/\A[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}\z/
  @node_name ~r/\A[A-Za-z0-9_.+-]+@[A-Za-z0-9_.-]+\z/
  @module_name ~r/\A[A-Z][A-Za-z0-9_]*(\.[A-Z][A-Za-z0-9_]*)*\z/
  @atom_name ~r/\A[a-z_][A-Za-z0-9_]*\z/

  defp keyword!(list, source) do
    if is_list(list) and Enum.all?(list, &match?({k, _} when is_atom(k), &1)),
      do: list,
      else: raise(ArgumentError, "ExESDB options from #{source} must be a keyword list")
  end

  defp merge(acc, source, source_of) do
    Enum.reduce(source, acc, fn {key, value}, acc ->
      if Map.has_key?(@defaults, key),
        do: Map.put(acc, key, validate!(key, value, source_of.(key))),
        else:
          raise(
            ArgumentError,
            "unknown ExESDB option #{inspect(key)} in #{source_of.(key)}; " <>
              "known: #{inspect(Enum.sort(keys()))}"
          )
    end)
  end

  defp env_overrides do
    known = Map.values(@env)

    for {var, _} <- System.get_env(),
        String.starts_with?(var, "EX_ESDB_"),
        var not in known do
      raise ArgumentError,
            "unknown ExESDB environment variable #{var}; known: #{Enum.join(Enum.sort(known), ", ")}"
    end

    for {key, var} <- @env, value = System.get_env(var), value not in [nil, ""] do
      {key, parse_env!(key, var, value)}
    end
  end

  # Environment strings become terms only once they have a valid shape:
  # known atoms are looked up, never created; names are checked first.
  defp parse_env!(key, var, value) do
    case key do
      k when k in [:timeout, :map_size, :raft_port, :election_timeout, :heartbeat] ->
        case Integer.parse(value) do
          {n, ""} -> n
          _ -> bad_env!(var, value, "expected an integer")
        end

      :store_id ->
        if value =~ @store_id, do: String.to_atom(value), else: bad_env!(var, value, expected(key))

      :pub_sub ->
        cond do
          value =~ @module_name -> Module.concat([value])
          value =~ @atom_name -> String.to_atom(value)
          true -> bad_env!(var, value, "expected a module name (MyApp.PubSub) or an atom name")
        end

      k when k in [:seed_nodes, :cnode_cluster] ->
        value |> String.split(",", trim: true) |> Enum.map(&String.trim/1)

      k when k in [:data_dir, :raft_bind, :cnode_listen] ->
        value

      k when k in [:cnode, :cnode_name] ->
        if value =~ @node_name, do: String.to_atom(value), else: bad_env!(var, value, expected(key))

      :cnode_cookie ->
        if value == "node", do: :node, else: value

      :raft_addresses ->
        value
        |> String.split(",", trim: true)
        |> Map.new(fn pair ->
          case String.split(String.trim(pair), "=", parts: 2) do
            [node, addr] -> {node, addr}
            _ -> bad_env!(var, value, expected(key))
          end
        end)

      _ ->
        try do
          String.to_existing_atom(value)
        rescue
          ArgumentError -> bad_env!(var, value, expected(key))
        end
    end
  end

  defp bad_env!(var, value, expected),
    do: raise(ArgumentError, "#{var}=#{inspect(value)} is invalid: #{expected}")

  defp validate!(:data_dir, v, _) when is_binary(v) and v != "", do: v

  defp validate!(:store_id, v, _) when is_atom(v) and v not in [nil, true, false] do
    if Atom.to_string(v) =~ @store_id, do: v, else: invalid!(:store_id, v, "")
  end

  defp validate!(:db_type, :single, _), do: :single

  # Cluster mode needs raft, built by `make raft` (not by mix or rebar3).
  defp validate!(:db_type, :cluster, _) do
    case ExESDB.Backend.Cluster.support() do
      {false, why} ->
        raise ArgumentError,
              "ExESDB option :db_type is :cluster, but this build has no cluster support: #{why}"

      true ->
        :cluster
    end
  end

  defp validate!(:raft_port, v, _) when v in 1..65_535//1, do: v
  defp validate!(:election_timeout, v, _) when v in 1..600_000//1, do: v
  defp validate!(:heartbeat, v, _) when v in 1..600_000//1, do: v
  defp validate!(:join, v, _) when is_boolean(v), do: v
  defp validate!(:initial_cluster, v, _) when v in [:auto, :new, :existing], do: v
  defp validate!(:cnode_wiped, v, _) when v in [:refuse, :rejoin], do: v
  defp validate!(:snapshot_threshold, v, _) when v in 1..0xFFFFFFFF//1, do: v

  defp validate!(:snapshot_trailing_bytes, v, _)
       when is_integer(v) and v > 0 and v < 4_611_686_018_427_387_904,
       do: v

  defp validate!(:raft_bind, v, source) when is_binary(v) do
    case :inet.parse_address(String.to_charlist(v)) do
      {:ok, _} -> v
      _ -> invalid!(:raft_bind, v, source)
    end
  end

  defp validate!(:raft_addresses, v, source) when is_map(v) or is_list(v) do
    Map.new(v, fn {node, addr} ->
      [node] = validate_nodes!(:raft_addresses, [node], source)
      if address?(addr), do: {node, addr}, else: invalid!(:raft_addresses, v, source)
    end)
  end

  # a receive waits at most 2^32 - 1 ms
  defp validate!(:timeout, v, _) when v in 1..0xFFFFFFFF//1, do: v

  defp validate!(k, v, source) when k in [:seed_nodes, :cnode_cluster] and is_list(v),
    do: validate_nodes!(k, v, source)

  defp validate!(:pub_sub, v, _) when is_atom(v) and v not in [true, false], do: v
  defp validate!(:pub_sub, {m, n} = v, _) when is_atom(m) and is_atom(n), do: v
  defp validate!(:durability, v, _) when v in [:sync, :strict, :no_meta_sync, :nosync], do: v
  defp validate!(:map_size, v, _) when v in 1_048_576..0xFFFFFFFFFFFFFFFF//1, do: v

  defp validate!(:file_mode, v, _) when v in 0o600..0o777 and Bitwise.band(v, 0o600) == 0o600,
    do: v

  defp validate!(:serializer, v, source) when is_atom(v) and v not in [nil, true, false] do
    if serializer?(v), do: v, else: invalid!(:serializer, v, source)
  end

  defp validate!(:limits, v, _) when is_list(v), do: validate_limits!(v)
  defp validate!(:backend, v, _) when v in [:nif, :cnode], do: v
  defp validate!(k, nil, _) when k in [:cnode, :cnode_name], do: nil

  defp validate!(k, v, source) when k in [:cnode, :cnode_name] and (is_atom(v) or is_binary(v)) do
    if to_string(v) =~ @node_name, do: validate_node!(v), else: invalid!(k, v, source)
  end

  defp validate!(:cnode_listen, v, source) when is_binary(v) do
    case :inet.parse_ipv4strict_address(String.to_charlist(v)) do
      {:ok, _} -> v
      _ -> invalid!(:cnode_listen, v, source)
    end
  end

  defp validate!(:cnode_cookie, :node, _), do: :node
  defp validate!(:cnode_cookie, v, _) when is_binary(v) and v != "", do: v
  defp validate!(key, value, source), do: invalid!(key, value, source)

  defp invalid!(key, value, source) do
    from = if source == "", do: "", else: " (from #{source})"

    raise ArgumentError,
          "invalid ExESDB option #{inspect(key)}: #{inspect(value)}#{from}; " <> expected(key)
  end

  # Node names as atoms, or as strings of the form name@host (made atoms
  # only after that check).
  defp validate_nodes!(key, nodes, source) do
    Enum.map(nodes, fn
      node when is_atom(node) and node not in [nil, true, false] ->
        node

      node when is_binary(node) ->
        if node =~ @node_name,
          do: String.to_atom(node),
          else: invalid!(key, nodes, source)

      _ ->
        invalid!(key, nodes, source)
    end)
  end

  defp validate_node!(v) when is_atom(v), do: v
  defp validate_node!(v), do: String.to_atom(v)

  # "ip:port" (or "host:port") with a port in 1..65535.
  defp address?(addr) when is_binary(addr) do
    case String.split(addr, ":") do
      [host, port] when host != "" ->
        match?({p, ""} when p in 1..65_535, Integer.parse(port))

      _ ->
        false
    end
  end

  defp address?(_), do: false

  # A loaded module with every required ExESDB.Serializer callback.
  defp serializer?(module) do
    callbacks =
      ExESDB.Serializer.behaviour_info(:callbacks) --
        ExESDB.Serializer.behaviour_info(:optional_callbacks)

    Code.ensure_loaded?(module) and
      Enum.all?(callbacks, fn {f, arity} -> function_exported?(module, f, arity) end)
  end

  defp validate_limits!(limits) do
    Enum.each(limits, fn
      {k, v} when k in @limit_keys and is_integer(v) and v > 0 ->
        if v > @limit_max[k],
          do:
            raise(
              ArgumentError,
              "invalid ExESDB limit #{inspect({k, v})}; at most #{@limit_max[k]}"
            )

      other ->
        raise ArgumentError,
              "invalid ExESDB limit #{inspect(other)}; expected one of " <>
                "#{inspect(@limit_keys)} with a positive integer"
    end)

    limits
  end

  defp expected(:data_dir), do: "expected a non-empty string"

  defp expected(:store_id),
    do: "expected an atom of letters, digits, _, - and . (not first . or -), at most 200"

  defp expected(:db_type), do: "expected :single or :cluster"
  defp expected(:raft_port), do: "expected a TCP port (1..65535)"
  defp expected(:raft_bind), do: "expected an IP address such as \"127.0.0.1\""

  defp expected(:raft_addresses),
    do: "expected node => \"ip:port\" (the variable: node=ip:port,...)"

  defp expected(:election_timeout), do: "expected milliseconds (1..600000)"
  defp expected(:heartbeat), do: "expected milliseconds (1..600000)"
  defp expected(:join), do: "expected true or false"
  defp expected(:initial_cluster), do: "expected :auto, :new or :existing"
  defp expected(:cnode_wiped), do: "expected :refuse or :rejoin"
  defp expected(:snapshot_threshold), do: "expected a positive integer below 2^32"
  defp expected(:snapshot_trailing_bytes), do: "expected a positive integer (bytes) below 2^62"
  defp expected(:timeout), do: "expected a positive integer (milliseconds) below 2^32"

  defp expected(k) when k in [:seed_nodes, :cnode_cluster],
    do: "expected a list of node names (name@host)"

  defp expected(:pub_sub), do: "expected a Phoenix.PubSub name, {module, name}, or nil"

  defp expected(:durability),
    do: "expected :sync, :no_meta_sync, :nosync (or :strict, the same as :sync)"

  defp expected(:map_size), do: "expected an integer of at least 1 MiB"
  defp expected(:file_mode), do: "expected permission bits with owner read and write, like 0o600"

  defp expected(:serializer),
    do: "expected a loaded module implementing ExESDB.Serializer (serialize/1, deserialize/2)"

  defp expected(:limits), do: "expected a keyword list"
  defp expected(:backend), do: "expected :nif or :cnode"
  defp expected(:cnode), do: "expected a node name (name@host) or nil"
  defp expected(:cnode_name), do: "expected a node name (name@host) or nil"
  defp expected(:cnode_listen), do: "expected an IPv4 address such as \"127.0.0.1\""
  defp expected(:cnode_cookie), do: "expected :node or the path of a 0400 file holding the cookie"
end
