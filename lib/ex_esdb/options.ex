defmodule ExESDB.Options do
  @moduledoc """
  Store options: defaults, then `config :ex_esdb, ...` (or
  `config otp_app, :ex_esdb, ...` with the `otp_app:` option), then
  `EX_ESDB_*` environment variables, then options given to
  `ExESDB.System` directly.

  | key | env | default | |
  |---|---|---|---|
  | `data_dir` | `EX_ESDB_DATA_DIR` | `"data"` | stores live in `data_dir/store_id/` |
  | `store_id` | `EX_ESDB_STORE_ID` | `:ex_esdb` | names the store in every call |
  | `db_type` | `EX_ESDB_DB_TYPE` | `:single` | `:single`; `:cluster` arrives with replication |
  | `timeout` | `EX_ESDB_TIMEOUT` | `10_000` | ms to wait for a write's acknowledgement |
  | `seed_nodes` | `EX_ESDB_SEED_NODES` | `[]` | comma-separated node names (cluster) |
  | `pub_sub` | `EX_ESDB_PUB_SUB` | `nil` | a Phoenix.PubSub-compatible server name |
  | `durability` | `EX_ESDB_DURABILITY` | `:sync` | `:sync`, `:strict` or `:nosync` (tests only) |
  | `map_size` | `EX_ESDB_MAP_SIZE` | 64 MiB | initial map; grows when full |
  | `file_mode` | | `0o600` | mode of the store's files and backups; directories get it plus `x` where `r` (`0o700`) |
  | `serializer` | | `ExESDB.Serializer.Term` | a module implementing `ExESDB.Serializer` |
  | `limits` | | core defaults | keyword: `max_stream_id`, `max_event_type`, `max_event_bytes`, `max_append_events`, `max_append_bytes`, `max_key` |

  An invalid value stops start-up with an `ArgumentError` naming the key
  and the value.
  """

  @type t :: %{
          data_dir: String.t(),
          store_id: atom(),
          db_type: :single | :cluster,
          timeout: pos_integer(),
          seed_nodes: [node()],
          pub_sub: atom() | {module(), atom()} | nil,
          durability: :sync | :strict | :nosync,
          map_size: pos_integer(),
          file_mode: non_neg_integer(),
          serializer: module(),
          limits: keyword()
        }

  @defaults %{
    data_dir: "data",
    store_id: :ex_esdb,
    db_type: :single,
    timeout: 10_000,
    seed_nodes: [],
    pub_sub: nil,
    durability: :sync,
    map_size: 64 * 1024 * 1024,
    file_mode: 0o600,
    serializer: ExESDB.Serializer.Term,
    limits: []
  }

  @env %{
    data_dir: "EX_ESDB_DATA_DIR",
    store_id: "EX_ESDB_STORE_ID",
    db_type: "EX_ESDB_DB_TYPE",
    timeout: "EX_ESDB_TIMEOUT",
    seed_nodes: "EX_ESDB_SEED_NODES",
    pub_sub: "EX_ESDB_PUB_SUB",
    durability: "EX_ESDB_DURABILITY",
    map_size: "EX_ESDB_MAP_SIZE"
  }

  @limit_keys [
    :max_stream_id,
    :max_event_type,
    :max_event_bytes,
    :max_append_events,
    :max_append_bytes,
    :max_key
  ]

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

    config =
      case otp_app do
        nil -> Application.get_all_env(:ex_esdb)
        app -> Application.get_env(app, :ex_esdb, [])
      end

    @defaults
    |> merge(config, :config)
    |> merge(env_overrides(), :env)
    |> merge(opts, :option)
  end

  @doc "The directory a store lives in: `data_dir/store_id`."
  @spec store_path(t()) :: String.t()
  def store_path(%{data_dir: dir, store_id: id}), do: Path.join(dir, Atom.to_string(id))

  defp merge(acc, source, origin) do
    Enum.reduce(source, acc, fn {key, value}, acc ->
      if Map.has_key?(@defaults, key) do
        Map.put(acc, key, validate!(key, value, origin))
      else
        if origin == :option,
          do: raise(ArgumentError, "unknown ExESDB option #{inspect(key)}"),
          else: acc
      end
    end)
  end

  defp env_overrides do
    for {key, var} <- @env, value = System.get_env(var), value not in [nil, ""] do
      {key, parse_env!(key, var, value)}
    end
  end

  defp parse_env!(key, var, value) do
    case key do
      k when k in [:timeout, :map_size] ->
        case Integer.parse(value) do
          {n, ""} -> n
          _ -> bad_env!(var, value, "an integer")
        end

      k when k in [:store_id, :db_type, :durability, :pub_sub] ->
        String.to_atom(value)

      :seed_nodes ->
        value |> String.split(",", trim: true) |> Enum.map(&String.to_atom(String.trim(&1)))

      :data_dir ->
        value
    end
  end

  defp bad_env!(var, value, expected),
    do: raise(ArgumentError, "#{var}=#{inspect(value)} is invalid: expected #{expected}")

  defp validate!(:data_dir, v, _) when is_binary(v) and v != "", do: v
  defp validate!(:store_id, v, _) when is_atom(v) and v not in [nil, true, false], do: v
  defp validate!(:db_type, :single, _), do: :single

  defp validate!(:db_type, :cluster, _),
    do:
      raise(
        ArgumentError,
        "ExESDB option :db_type is :cluster, but this version has no replication yet; use :single"
      )

  defp validate!(:timeout, v, _) when is_integer(v) and v > 0, do: v
  defp validate!(:seed_nodes, v, _) when is_list(v), do: validate_nodes!(v)
  defp validate!(:pub_sub, v, _) when is_atom(v), do: v
  defp validate!(:pub_sub, {m, n} = v, _) when is_atom(m) and is_atom(n), do: v
  defp validate!(:durability, v, _) when v in [:sync, :strict, :nosync], do: v
  defp validate!(:map_size, v, _) when is_integer(v) and v >= 1_048_576, do: v

  defp validate!(:file_mode, v, _) when v in 0o600..0o777 and Bitwise.band(v, 0o600) == 0o600,
    do: v

  defp validate!(:serializer, v, _) when is_atom(v) and v not in [nil, true, false], do: v
  defp validate!(:limits, v, _) when is_list(v), do: validate_limits!(v)

  defp validate!(key, value, origin) do
    raise ArgumentError,
          "invalid ExESDB option #{inspect(key)}: #{inspect(value)} (from #{origin}); " <>
            expected(key)
  end

  defp validate_nodes!(nodes) do
    if Enum.all?(nodes, &is_atom/1),
      do: nodes,
      else: validate!(:seed_nodes, nodes, :option_list)
  end

  defp validate_limits!(limits) do
    Enum.each(limits, fn
      {k, v} when k in @limit_keys and is_integer(v) and v > 0 ->
        :ok

      other ->
        raise ArgumentError,
              "invalid ExESDB limit #{inspect(other)}; expected one of " <>
                "#{inspect(@limit_keys)} with a positive integer"
    end)

    limits
  end

  defp expected(:data_dir), do: "expected a non-empty string"
  defp expected(:store_id), do: "expected an atom"
  defp expected(:db_type), do: "expected :single"
  defp expected(:timeout), do: "expected a positive integer (milliseconds)"
  defp expected(:seed_nodes), do: "expected a list of node names"
  defp expected(:pub_sub), do: "expected a Phoenix.PubSub name, {module, name}, or nil"
  defp expected(:durability), do: "expected :sync, :strict or :nosync"
  defp expected(:map_size), do: "expected an integer of at least 1 MiB"
  defp expected(:file_mode), do: "expected permission bits with owner read and write, like 0o600"
  defp expected(:serializer), do: "expected a module implementing ExESDB.Serializer"
  defp expected(:limits), do: "expected a keyword list"
end
