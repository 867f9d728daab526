defmodule BitFlags do
  @moduledoc """
  Helpers for manipulating integer bit flags.

  A state is a non-negative integer in which each bit (a power of two) is a
  flag. Flags can be set, unset and queried, and a state can be rendered to
  human-readable descriptions using a map of `flag => description`.

  All functions require integers; passing anything else raises
  `FunctionClauseError`.
  """

  import Bitwise

  @type flag_map :: %{optional(non_neg_integer()) => term()}

  @doc """
  Sets `flag` in `target`.

  ## Examples

      iex> BitFlags.set(36, 64)
      100
  """
  @spec set(integer(), integer()) :: integer()
  def set(target, flag) when is_integer(target) and is_integer(flag), do: target ||| flag

  @doc """
  Clears `flag` in `target`.

  ## Examples

      iex> BitFlags.unset(100, 64)
      36
  """
  @spec unset(integer(), integer()) :: integer()
  def unset(target, flag) when is_integer(target) and is_integer(flag),
    do: target &&& bnot(flag)

  @doc """
  Sets every flag in `flags` in `target`.

  ## Examples

      iex> BitFlags.set_all(36, [64, 128])
      228
  """
  @spec set_all(integer(), [integer()]) :: integer()
  def set_all(target, flags) when is_integer(target) and is_list(flags),
    do: Enum.reduce(flags, target, &set(&2, &1))

  @doc """
  Clears every flag in `flags` in `target`.

  ## Examples

      iex> BitFlags.unset_all(228, [64, 128])
      36
  """
  @spec unset_all(integer(), [integer()]) :: integer()
  def unset_all(target, flags) when is_integer(target) and is_list(flags),
    do: Enum.reduce(flags, target, &unset(&2, &1))

  @doc """
  Returns `true` when all bits of `flag` are set in `target`.

  ## Examples

      iex> BitFlags.has?(100, 64)
      true
  """
  @spec has?(integer(), integer()) :: boolean()
  def has?(target, flag) when is_integer(target) and is_integer(flag),
    do: (target &&& flag) == flag

  @doc """
  Returns `true` when not all bits of `flag` are set in `target`.

  ## Examples

      iex> BitFlags.has_not?(100, 64)
      false
      iex> BitFlags.has_not?(100, 8)
      true
  """
  @spec has_not?(integer(), integer()) :: boolean()
  def has_not?(target, flag) when is_integer(target) and is_integer(flag),
    do: (target &&& flag) != flag

  @doc """
  Returns `true` when every flag in `flags` is set in `target`.

  ## Examples

      iex> BitFlags.has_all?(100, [64, 32])
      true
      iex> BitFlags.has_all?(100, [64, 8])
      false
  """
  @spec has_all?(integer(), [integer()]) :: boolean()
  def has_all?(target, flags) when is_integer(target) and is_list(flags),
    do: Enum.all?(flags, &has?(target, &1))

  @doc """
  Returns `true` when at least one flag in `flags` is set in `target`.

  ## Examples

      iex> BitFlags.has_any?(100, [64, 128])
      true
  """
  @spec has_any?(integer(), [integer()]) :: boolean()
  def has_any?(target, flags) when is_integer(target) and is_list(flags),
    do: Enum.any?(flags, &has?(target, &1))

  @doc """
  Returns the descriptions of the flags set in `n`, ordered by ascending flag
  value. For `0` it returns `[flag_map[0]]`.

  ## Examples

      iex> descriptions = %{0 => "None", 1 => "Ready", 2 => "In Progress", 4 => "Completed", 8 => "Cancelled", 16 => "Failed", 32 => "Archived", 64 => "Ready to Archive", 128 => "Ready to Publish", 256 => "Published", 512 => "Unpublished"}
      iex> BitFlags.to_list(100, descriptions)
      ["Completed", "Archived", "Ready to Archive"]
      iex> BitFlags.to_list(0, descriptions)
      ["None"]
  """
  @spec to_list(non_neg_integer(), flag_map()) :: [term()]
  def to_list(0, flag_map) when is_map(flag_map), do: [flag_map[0]]

  def to_list(n, flag_map) when is_integer(n) and n > 0 and is_map(flag_map) do
    flag_map
    |> Map.keys()
    |> Enum.sort()
    |> Enum.filter(&(band(n, &1) != 0))
    |> Enum.map(&flag_map[&1])
  end

  @doc """
  Returns the description of the highest flag set in `n`.
  Raises `MatchError` when no described flag is set.

  ## Examples

      iex> descriptions = %{0 => "None", 1 => "Ready", 2 => "In Progress", 4 => "Completed", 8 => "Cancelled", 16 => "Failed", 32 => "Archived", 64 => "Ready to Archive", 128 => "Ready to Publish", 256 => "Published", 512 => "Unpublished"}
      iex> BitFlags.highest(100, descriptions)
      "Ready to Archive"
  """
  @spec highest(non_neg_integer(), flag_map()) :: term()
  def highest(n, flag_map) when is_integer(n) do
    [head | _] = n |> to_list(flag_map) |> Enum.reverse()
    head
  end

  @doc """
  Returns the description of the lowest flag set in `n`.
  Raises `MatchError` when no described flag is set.

  ## Examples

      iex> descriptions = %{0 => "None", 1 => "Ready", 2 => "In Progress", 4 => "Completed", 8 => "Cancelled", 16 => "Failed", 32 => "Archived", 64 => "Ready to Archive", 128 => "Ready to Publish", 256 => "Published", 512 => "Unpublished"}
      iex> BitFlags.lowest(100, descriptions)
      "Completed"
  """
  @spec lowest(non_neg_integer(), flag_map()) :: term()
  def lowest(n, flag_map) when is_integer(n) do
    [head | _] = to_list(n, flag_map)
    head
  end

  @doc """
  Returns the descriptions of the flags set in `n`, joined with `", "`.

  ## Examples

      iex> descriptions = %{0 => "None", 1 => "Ready", 2 => "In Progress", 4 => "Completed", 8 => "Cancelled", 16 => "Failed", 32 => "Archived", 64 => "Ready to Archive", 128 => "Ready to Publish", 256 => "Published", 512 => "Unpublished"}
      iex> BitFlags.to_string(100, descriptions)
      "Completed, Archived, Ready to Archive"
  """
  @spec to_string(non_neg_integer(), flag_map()) :: String.t()
  def to_string(n, flag_map) when is_integer(n), do: n |> to_list(flag_map) |> Enum.join(", ")

  @doc """
  Decomposes a positive integer into the ascending list of powers of two set
  in it.

  ## Examples

      iex> BitFlags.decompose(100)
      [4, 32, 64]
  """
  @spec decompose(pos_integer()) :: [pos_integer()]
  def decompose(target) when is_integer(target) and target > 0, do: decompose(target, 1, [])

  defp decompose(0, _power, acc), do: Enum.reverse(acc)

  defp decompose(target, power, acc) do
    if band(target, power) != 0 do
      decompose(target - power, power <<< 1, [power | acc])
    else
      decompose(target, power <<< 1, acc)
    end
  end
end
