defmodule ExESDB.Chaos.JSON do
  @moduledoc false
  # Enough JSON for the results files (no dependency): maps, lists,
  # tuples (as arrays), strings, numbers, atoms (as strings; true, false
  # and nil as themselves); anything else as its inspect text.

  def encode(term), do: IO.iodata_to_binary(value(term))

  defp value(nil), do: "null"
  defp value(true), do: "true"
  defp value(false), do: "false"
  defp value(a) when is_atom(a), do: string(Atom.to_string(a))
  defp value(n) when is_integer(n), do: Integer.to_string(n)
  defp value(f) when is_float(f), do: Float.to_string(f)
  defp value(b) when is_binary(b), do: string(b)
  defp value(t) when is_tuple(t), do: value(Tuple.to_list(t))
  defp value(%_{} = s), do: s |> Map.from_struct() |> value()

  defp value(m) when is_map(m) do
    members = Enum.map(m, fn {k, v} -> [string(key(k)), ?:, value(v)] end)
    [?{, Enum.intersperse(members, ?,), ?}]
  end

  defp value(l) when is_list(l), do: [?[, Enum.intersperse(Enum.map(l, &value/1), ?,), ?]]
  defp value(other), do: string(inspect(other))

  defp key(k) when is_binary(k), do: k
  defp key(k) when is_atom(k), do: Atom.to_string(k)
  defp key(k), do: inspect(k)

  defp string(b) do
    b = if String.valid?(b), do: b, else: inspect(b)
    [?", escape(b, b, 0, 0), ?"]
  end

  # One pass over the string: runs of bytes that need no escape are
  # taken as sub-binaries of it (valid UTF-8 passes through unchanged),
  # each special byte replaced; no pattern built per string.
  defp escape(<<c, r::binary>>, b, from, len) when c in [?", ?\\] or c < 0x20,
    do: [binary_part(b, from, len), esc(c) | escape(r, b, from + len + 1, 0)]

  defp escape(<<_, r::binary>>, b, from, len), do: escape(r, b, from, len + 1)
  defp escape(<<>>, b, from, len), do: binary_part(b, from, len)

  defp esc(?"), do: "\\\""
  defp esc(?\\), do: "\\\\"
  defp esc(?\n), do: "\\n"
  defp esc(c), do: :io_lib.format("\\u~4.16.0b", [c])
end
