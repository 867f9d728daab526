defmodule ExESDB.UUID do
  @moduledoc """
  UUIDs as text (`"0b9ad4a5-…"`) at the API and as 16 bytes in the store.
  """
  import Kernel, except: [to_string: 1]

  @doc "A random (version 4) UUID as text."
  @spec uuid4() :: String.t()
  def uuid4, do: to_string(uuid4_binary())

  @doc "A random (version 4) UUID as 16 bytes."
  @spec uuid4_binary() :: <<_::128>>
  def uuid4_binary do
    <<a::48, _::4, b::12, _::2, c::62>> = :crypto.strong_rand_bytes(16)
    <<a::48, 4::4, b::12, 2::2, c::62>>
  end

  @doc """
  16 bytes from a UUID in text (with or without dashes) or already binary.

      iex> ExESDB.UUID.to_binary("00000000-0000-0000-0000-00000000002a")
      {:ok, <<0::120, 42>>}
      iex> ExESDB.UUID.to_binary("not a uuid")
      :error
  """
  @spec to_binary(term()) :: {:ok, <<_::128>>} | :error
  def to_binary(<<_::128>> = bin), do: {:ok, bin}

  def to_binary(
        <<a::binary-8, ?-, b::binary-4, ?-, c::binary-4, ?-, d::binary-4, ?-, e::binary-12>>
      ),
      do: to_binary(a <> b <> c <> d <> e)

  def to_binary(<<hex::binary-32>>) do
    case Base.decode16(hex, case: :mixed) do
      {:ok, bin} -> {:ok, bin}
      :error -> :error
    end
  end

  def to_binary(_), do: :error

  @doc """
  The text form of a 16-byte UUID.

      iex> ExESDB.UUID.to_string(<<0::120, 42>>)
      "00000000-0000-0000-0000-00000000002a"
  """
  @spec to_string(<<_::128>>) :: String.t()
  def to_string(<<_::128>> = bin) do
    # One hex encoding of all 16 bytes, then one concatenation: reads
    # convert every event id, so this is on the hot path.
    <<a::binary-8, b::binary-4, c::binary-4, d::binary-4, e::binary-12>> =
      Base.encode16(bin, case: :lower)

    <<a::binary, ?-, b::binary, ?-, c::binary, ?-, d::binary, ?-, e::binary>>
  end
end
