defmodule ExESDB.Aggregator do
  @moduledoc """
  Folds a sorted list of event maps into a single state map.

  Values in an event map may be tagged to control how they are combined with
  the accumulated state:

    * `{:sum, n}` (with `n` a number) adds `n` to the current value of the key
      and stores the result as `{:sum, total}`. The current value counts as
      `v` when it is `{:sum, v}`, as itself when it is a plain number, and as
      `0` otherwise (missing, `nil` or any other value).
    * `{:overwrite, v}` stores `v` unwrapped.
    * Any other value (including `{:sum, non_number}`) replaces the current
      value as-is.

  Only top-level keys are considered; nested maps are not merged.
  Use `finalize_map/1` to strip the remaining `{:sum, _}`/`{:overwrite, _}` tags.
  """

  @type tagged_value :: {:sum, number()} | {:overwrite, term()} | term()
  @type state :: %{optional(term()) => tagged_value()}

  @doc """
  Reduces `sorted_events` (a list of maps) into `state`, applying the tagging
  rules described in the module documentation.

  ## Examples

      iex> ExESDB.Aggregator.foldl([])
      %{}

      iex> ExESDB.Aggregator.foldl([%{counter: {:sum, 5}}, %{counter: {:sum, 10}}])
      %{counter: {:sum, 15}}

      iex> ExESDB.Aggregator.foldl([%{name: "John"}, %{name: {:overwrite, "Jane"}}])
      %{name: "Jane"}

      iex> ExESDB.Aggregator.foldl([
      ...>   %{name: "John", counter: 5},
      ...>   %{counter: {:sum, 10}, status: "active"},
      ...>   %{name: {:overwrite, "Jane"}}
      ...> ])
      %{name: "Jane", counter: {:sum, 15}, status: "active"}

      iex> ExESDB.Aggregator.foldl([%{counter: {:sum, 10}}], %{name: "John", counter: 5})
      %{name: "John", counter: {:sum, 15}}
  """
  @spec foldl([map()], state()) :: state()
  def foldl(sorted_events, state \\ %{}) when is_list(sorted_events) and is_map(state) do
    Enum.reduce(sorted_events, state, fn event, acc ->
      Enum.reduce(event, acc, fn {key, value}, inner_acc ->
        apply_value(inner_acc, key, value)
      end)
    end)
  end

  defp apply_value(acc, key, {:sum, n}) when is_number(n) do
    current =
      case Map.get(acc, key) do
        {:sum, v} -> v
        v when is_number(v) -> v
        _ -> 0
      end

    Map.put(acc, key, {:sum, current + n})
  end

  defp apply_value(acc, key, {:overwrite, v}), do: Map.put(acc, key, v)
  defp apply_value(acc, key, value), do: Map.put(acc, key, value)

  @doc """
  Unwraps top-level `{:sum, v}` and `{:overwrite, v}` values to `v`.
  All other values are left unchanged.

  ## Examples

      iex> ExESDB.Aggregator.finalize_map(%{name: "John", counter: {:sum, 15}, status: {:overwrite, "active"}})
      %{name: "John", counter: 15, status: "active"}

      iex> ExESDB.Aggregator.finalize_map(%{other: {:other, 1}})
      %{other: {:other, 1}}
  """
  @spec finalize_map(state()) :: map()
  def finalize_map(tagged_map) when is_map(tagged_map) do
    Map.new(tagged_map, fn
      {key, {:sum, v}} -> {key, v}
      {key, {:overwrite, v}} -> {key, v}
      {key, v} -> {key, v}
    end)
  end
end
