defmodule ExESDB.ReadConsistency do
  @moduledoc """
  The `consistency` option of the reads (`ExESDB.Streams`' reads,
  `ExESDB.Streams.get_version/3`, `ExESDB.Snapshots.read_snapshot/3`):

    * `:local` (the default): the read is served by this node's store as
      it is. In cluster mode a follower's replica may not have applied
      writes acknowledged elsewhere yet (the caller's own acknowledged
      writes it has: read-your-writes, `ExESDB.Cluster`).
    * `:linearizable`: first a barrier (`ExESDB.Cluster.barrier/2`)
      through the leader's log, then the local read: the read sees every
      write acknowledged, on any node, before it was called. The
      barrier waits at most the read's `timeout` (ms or `:infinity`;
      default the store's `timeout`); during an election it waits, then
      the read answers the barrier's error and reads nothing:
      `{:error, :no_quorum}` (no leader known: a minority side, or the
      election outlasted the timeout), `{:error, {:not_leader, node}}`
      (a leader is known but did not answer), `{:error, :timeout}` (the
      barrier went through but this node's replica did not apply it in
      time). A lazy stream (`stream_forward/5`, ...) passes the barrier
      before its first page; its later pages are read locally then,
      and see at least as much.

  On a single-node store (and a C node without `cnode_cluster`) every
  read is linearizable already: `:linearizable` is the local read.
  `timeout` bounds only that barrier (a local read does not wait). A
  wrong value answers `{:error, {:invalid_option, {:consistency, v}}}`
  or `{:error, {:invalid_timeout, t}}`; an unknown option `{:error,
  {:invalid_option, o}}`, options that are not a list `{:error,
  {:invalid_options, opts}}`.
  """

  @typedoc "The reads' consistency options."
  @type opts :: [consistency: :local | :linearizable, timeout: timeout()]

  # the longest a receive can wait
  @max_timeout 0xFFFFFFFF

  @doc false
  # The options checked: a map of them. `extra` is the read's own keys
  # (`:decode` takes a boolean).
  @spec options(term(), [atom()]) :: {:ok, map()} | {:error, term()}
  def options(opts, extra) when is_list(opts) do
    Enum.reduce_while(opts, {:ok, %{}}, fn
      {:consistency, c}, {:ok, o} when c in [:local, :linearizable] ->
        {:cont, {:ok, Map.put(o, :consistency, c)}}

      {:timeout, t}, {:ok, o} when t in 0..@max_timeout//1 or t == :infinity ->
        {:cont, {:ok, Map.put(o, :timeout, t)}}

      {:timeout, t}, _ ->
        {:halt, {:error, {:invalid_timeout, t}}}

      {:decode, d}, {:ok, o} when is_boolean(d) ->
        if :decode in extra,
          do: {:cont, {:ok, Map.put(o, :decode, d)}},
          else: {:halt, {:error, {:invalid_option, {:decode, d}}}}

      other, _ ->
        {:halt, {:error, {:invalid_option, other}}}
    end)
  end

  def options(opts, _extra), do: {:error, {:invalid_options, opts}}

  @doc false
  # Before a read with these options: the barrier of a linearizable read
  # in cluster mode; nothing otherwise (one node is linearizable as is).
  @spec before_read(map(), map()) :: :ok | {:error, term()}
  def before_read(s, %{consistency: :linearizable} = o) do
    case ExESDB.Cluster.barrier(s.store_id, Map.get(o, :timeout, s.timeout)) do
      {:error, :not_cluster} -> :ok
      other -> other
    end
  end

  def before_read(_s, _o), do: :ok
end
