defmodule ExESDB.TestEpmdTest do
  # The epmd the test setup starts (test_helper.exs) listens on loopback
  # only, and one already running is used as it is. Run on a port of its
  # own: the machine's epmd (4369) may have been started by anyone.
  use ExUnit.Case, async: true

  import ExESDB.Test.ClusterHelpers, only: [free_ports: 1, wait_until: 2]

  test "started on loopback only; a second start with one running answers :ok" do
    [port] = free_ports(1)
    on_exit(fn -> System.cmd("epmd", ["-port", "#{port}", "-kill"], stderr_to_stdout: true) end)

    assert :ok = ExESDB.Test.Epmd.ensure_started(port)
    assert listeners(port) != []

    assert Enum.all?(listeners(port), &loopback?/1), inspect(listeners(port))

    # one already running: kept, still answering
    before = listeners(port)
    assert :ok = ExESDB.Test.Epmd.ensure_started(port)
    assert listeners(port) == before

    {_, 0} = System.cmd("epmd", ["-port", "#{port}", "-kill"])
    wait_until(fn -> listeners(port) == [] end, 5_000)
  end

  test "its addresses are loopback ones, 127.0.0.1 among them" do
    addresses = ExESDB.Test.Epmd.addresses()
    assert "127.0.0.1" in addresses

    for a <- addresses,
        do: assert({:ok, {127, _, _, _}} = :inet.parse_ipv4strict_address(to_charlist(a)))
  end

  defp loopback?({127, _, _, _}), do: true
  defp loopback?({0, 0, 0, 0, 0, 0, 0, 1}), do: true
  defp loopback?(_), do: false

  # The addresses sockets listen on at this TCP port (/proc/net/tcp{,6}).
  defp listeners(port) do
    for file <- ["/proc/net/tcp", "/proc/net/tcp6"],
        line <- file |> File.read!() |> String.split("\n") |> Enum.drop(1),
        [_, local, _, "0A" | _] <- [String.split(line)],
        [addr, p] = String.split(local, ":"),
        String.to_integer(p, 16) == port,
        do: address(addr)
  end

  # /proc/net/tcp writes each 32-bit word in host (little-endian) order
  defp address(hex) do
    words = for <<w::binary-8 <- hex>>, do: <<String.to_integer(w, 16)::little-32>>

    case IO.iodata_to_binary(words) do
      <<a, b, c, d>> -> {a, b, c, d}
      <<v6::binary-16>> -> List.to_tuple(for <<x::16 <- v6>>, do: x)
    end
  end
end
