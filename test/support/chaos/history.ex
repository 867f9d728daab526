defmodule ExESDB.Chaos.History do
  @moduledoc false
  # The record of a workload: every operation with the client that made it,
  # the node it went to, its invocation and completion times (this VM's
  # monotonic clock, native units: clients run here and call the nodes, so
  # one clock orders every operation) and its result.
  #
  # One public ETS table; each client writes its own rows (an invocation
  # row, replaced by the completed one), so N clients record without a
  # process in between. An operation still without a completion when the
  # history is collected has an unknown outcome.
  #
  # Operations are maps:
  #   %{type: :append, stream:, expected:, event_ids: [id]}
  #   %{type: :read, stream:, consistency: :linearizable | :local}
  #     result {:ok, [event_id]} (the stream from version 1, in order)
  #   %{type: :subscribe, subscription:, selector:}
  #   %{type: :deliver, subscription:, event_id:, stream:, version:, position:}
  # plus :client, :node, :invoked_at, :completed_at, :result and :outcome
  # (:ok | :fail | :unknown, from the result: see outcome/1).

  defstruct [:table]

  @type t :: %__MODULE__{table: :ets.tid()}

  # Answers that mean nothing was written. Anything else that is not
  # {:ok, ...} (outcome_unknown, a lost node, an exit) may go either way.
  @definite [
    :wrong_expected_version,
    :stream_exists,
    :stream_not_found,
    :stream_deleted,
    :no_events,
    :timeout,
    :overloaded,
    :no_quorum,
    :store_not_started,
    :disk_full,
    :locked
  ]

  @doc "A new, empty history owned by the calling process."
  def new,
    do: %__MODULE__{table: :ets.new(:chaos_history, [:set, :public, write_concurrency: true])}

  def now, do: System.monotonic_time()

  @doc "Record that `client` invokes `op` on `node`; returns the key for complete/3."
  def invoke(%__MODULE__{table: t}, client, node, op) do
    key = {now(), :erlang.unique_integer([:monotonic, :positive])}
    row = Map.merge(op, %{client: client, node: node, invoked_at: elem(key, 0)})
    :ets.insert(t, {key, Map.merge(row, %{completed_at: nil, result: nil, outcome: :unknown})})
    key
  end

  @doc "Record the result of the operation invoked as `key`."
  def complete(%__MODULE__{table: t}, key, result) do
    [{^key, row}] = :ets.lookup(t, key)

    :ets.insert(
      t,
      {key, %{row | completed_at: now(), result: result, outcome: outcome(result)}}
    )

    result
  end

  @doc "Invoke, run `fun` (its result completes the operation), return the result."
  def run(h, client, node, op, fun) do
    key = invoke(h, client, node, op)

    result =
      try do
        fun.()
      catch
        kind, reason -> {:error, {kind, reason}}
      end

    complete(h, key, result)
  end

  @doc "Record an instantaneous event (a delivery, a subscription)."
  def record(h, client, node, op) do
    key = invoke(h, client, node, op)
    complete(h, key, :ok)
  end

  @doc "Every operation, in invocation order."
  def ops(%__MODULE__{table: t}) do
    t |> :ets.tab2list() |> Enum.sort_by(&elem(&1, 0)) |> Enum.map(&elem(&1, 1))
  end

  @doc "How a result is counted: :ok, :fail (nothing written) or :unknown."
  def outcome(:ok), do: :ok
  def outcome({:ok, _}), do: :ok
  def outcome({:ok, _, _}), do: :ok
  def outcome({:error, reason}) when reason in @definite, do: :fail
  def outcome({:error, {:not_leader, _}}), do: :fail
  def outcome({:error, {:limit_exceeded, _, _}}), do: :fail
  def outcome({:error, {tag, _}}) when is_atom(tag), do: invalid(tag)
  def outcome(_), do: :unknown

  # {:invalid_X, v}: refused before anything was sent
  defp invalid(tag) do
    if String.starts_with?(Atom.to_string(tag), "invalid_"), do: :fail, else: :unknown
  end
end
