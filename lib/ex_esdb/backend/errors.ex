defmodule ExESDB.Backend.Errors do
  @moduledoc false
  # Where the core's answers become the ecosystem's atoms (README's error
  # table), once for every backend: the core says `not_found` for anything
  # absent; callers are told what was absent.

  @doc "The reply of operation `op` as the Elixir API words it."
  @spec translate(atom(), term()) :: term()
  def translate(op, {:error, :not_found}), do: {:error, not_found(op)}
  def translate(_op, reply), do: reply

  defp not_found(op) when op in [:snapshot_get, :snapshot_delete], do: :snapshot_not_found

  defp not_found(op) when op in [:checkpoint_get, :checkpoint_delete, :grant, :unsubscribe],
    do: :subscription_not_found

  defp not_found(_op), do: :not_found
end
