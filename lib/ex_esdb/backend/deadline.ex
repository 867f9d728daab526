defmodule ExESDB.Backend.Deadline do
  @moduledoc false
  # A write try's deadline as another node or OS process checks it (the
  # cluster gateway's leader, a C node's in_term fence): in wall-clock ms,
  # monotonic time being per machine, with a reply margin kept before the
  # caller's deadline. The margin absorbs a skew of the two clocks up to
  # it (docs/CLUSTER.md, "Clocks") and leaves time for the reply to
  # reach the caller. Written once for both backends.

  # at most this many ms, at most a quarter of the time left
  @reply_margin 50

  @doc "The reply margin of a try with `left` ms left: a quarter, at most 50 ms."
  @spec margin(non_neg_integer() | :infinity) :: non_neg_integer()
  def margin(:infinity), do: @reply_margin
  def margin(left), do: min(div(left, 4), @reply_margin)

  @doc """
  The margin recomputed by a leader from the time it was given,
  `left - margin(left)` (a quarter of `left` is a third of that).
  """
  @spec budget_margin(non_neg_integer() | :infinity) :: non_neg_integer()
  def budget_margin(:infinity), do: @reply_margin
  def budget_margin(budget), do: min(div(budget, 3), @reply_margin)

  @doc "The wall-clock ms `left` ms from now (:infinity: none)."
  @spec wall(non_neg_integer() | :infinity) :: integer() | :infinity
  def wall(:infinity), do: :infinity
  def wall(left), do: System.system_time(:millisecond) + left

  @doc """
  The wall-clock ms after which a try with `left` ms left must not be
  taken: its caller's deadline less the margin (:infinity: none).
  """
  @spec until(non_neg_integer() | :infinity) :: integer() | :infinity
  def until(:infinity), do: :infinity
  def until(left), do: wall(left - margin(left))
end
