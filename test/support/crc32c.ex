defmodule ExESDB.Test.Crc32c do
  @moduledoc false
  # CRC-32C (Castagnoli, reflected 0x82F63B78), as the store checks its
  # records: tests that rewrite stored bytes seal them again with it.
  import Bitwise

  def crc32c(bin), do: bxor(crc32c(bin, 0xFFFFFFFF), 0xFFFFFFFF)

  defp crc32c(<<>>, c), do: c

  defp crc32c(<<b, rest::binary>>, c) do
    c =
      Enum.reduce(1..8, bxor(c, b), fn _, c ->
        if (c &&& 1) == 1, do: bxor(c >>> 1, 0x82F63B78), else: c >>> 1
      end)

    crc32c(rest, c)
  end
end
