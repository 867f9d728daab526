defmodule ExESDB.ChaosJSONTest do
  # ExESDB.Chaos.JSON writes the chaos results (histories of 100 MB and
  # more). Its strings are escaped in one pass now; the JSON must stay
  # what the earlier encoder wrote (Before, below: it built a pattern
  # per string), escapes included.
  use ExUnit.Case, async: true

  alias ExESDB.Chaos.JSON

  defmodule Before do
    # the earlier encoder's strings, as they were
    @special ["\"", "\\" | Enum.map(0..31, &<<&1>>)]

    def string(b) do
      b = if String.valid?(b), do: b, else: inspect(b)

      if :binary.match(b, @special) == :nomatch,
        do: IO.iodata_to_binary([?", b, ?"]),
        else: IO.iodata_to_binary([?", escape(b, []), ?"])
    end

    defp escape(<<>>, acc), do: Enum.reverse(acc)
    defp escape(<<?", r::binary>>, acc), do: escape(r, ["\\\"" | acc])
    defp escape(<<?\\, r::binary>>, acc), do: escape(r, ["\\\\" | acc])
    defp escape(<<?\n, r::binary>>, acc), do: escape(r, ["\\n" | acc])

    defp escape(<<c, r::binary>>, acc) when c < 0x20,
      do: escape(r, [:io_lib.format("\\u~4.16.0b", [c]) | acc])

    defp escape(<<c::utf8, r::binary>>, acc), do: escape(r, [<<c::utf8>> | acc])
  end

  test "escapes: quote, backslash, newline, other control bytes as \\u00xx" do
    assert JSON.encode(~s(a"b)) == ~S("a\"b")
    assert JSON.encode("a\\b") == ~S("a\\b")
    assert JSON.encode("a\nb") == ~S("a\nb")
    assert JSON.encode(<<1, ?x, 31, 9>>) == ~S("\u0001x\u001f\u0009")
    assert JSON.encode("") == ~S("")
    assert JSON.encode("héllo ✓") == ~s("héllo ✓")
    # not UTF-8: its inspect text
    assert JSON.encode(<<255, 0>>) == ~S("<<255, 0>>")
  end

  test "every string the same JSON as the earlier encoder wrote" do
    :rand.seed(:exsss, {1, 2, 3})
    alphabet = [?", ?\\, ?\n, ?\t, 0, 1, 31, 32, ?a, ?z, 127] ++ String.to_charlist("é✓𝄞")

    strings =
      for n <- Enum.to_list(0..40) ++ [1000, 100_000] do
        for _ <- 1..n, into: "", do: <<Enum.random(alphabet)::utf8>>
      end

    bytes = for c <- 0..255, do: <<c>>
    invalid = [<<0xC3>>, <<?a, 0xFF, ?">>, <<0xE2, 0x9C>>]

    for s <- strings ++ bytes ++ invalid do
      assert JSON.encode(s) == Before.string(s), inspect(s)
    end

    # inside maps, lists and tuples, keys and atoms too
    term = %{"k\"ey" => [{:ok, "a\nb"}, :"at\\om", nil, 1, 2.5], x: %{y: "\u0001"}}
    got = JSON.encode(term)
    assert got =~ ~S("k\"ey":[["ok","a\nb"],"at\\om",null,1,2.5])
    assert got =~ ~S("x":{"y":"\u0001"})
  end
end
