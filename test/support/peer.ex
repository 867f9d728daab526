defmodule ExESDB.Test.Peer do
  @moduledoc false
  # :peer.start for the tests, whose boot failure says its cause. A
  # :peer.start that exits (:timeout, a VM that halted) said nothing
  # more: this raises naming the node, its distribution port, whether
  # that port could be bound right after the failure (and who holds it
  # if not), whether its name is taken in epmd, and the load.

  @doc "ExESDB.Test.Peer.start(opts) (wait_boot 60 s unless given); a boot failure raises with its cause."
  def start(opts), do: boot(:start, opts)

  @doc "As start/1, linked (:peer.start_link)."
  def start_link(opts), do: boot(:start_link, opts)

  defp boot(fun, opts) do
    # a VM's boot may take over :peer's default 15 s on a loaded machine
    opts = Map.put_new(opts, :wait_boot, 60_000)
    t0 = System.monotonic_time(:millisecond)

    try do
      apply(:peer, fun, [opts])
    catch
      :exit, why -> raise boot_failure(opts, {:exit, why}, t0)
    else
      {:error, _} = e -> raise boot_failure(opts, e, t0)
      ok -> ok
    end
  end

  defp boot_failure(opts, why, t0) do
    ms = System.monotonic_time(:millisecond) - t0
    name = Map.get(opts, :name)
    port = dist_port(Map.get(opts, :args, []))

    "peer #{inspect(name)} did not boot (#{inspect(why)} after #{ms} ms): " <>
      "distribution port #{port_state(port)}; epmd #{epmd_state(name)}; " <>
      "load #{load()}"
  end

  # the port fixed by -kernel inet_dist_listen_min, nil if the OS picks it
  defp dist_port(args) do
    args
    |> Enum.map(&to_string/1)
    |> Enum.chunk_every(2, 1, :discard)
    |> Enum.find_value(fn
      ["inet_dist_listen_min", p] -> String.to_integer(p)
      _ -> nil
    end)
  end

  defp port_state(nil), do: "picked by the OS"

  defp port_state(port) do
    case :gen_tcp.listen(port, reuseaddr: true) do
      {:ok, s} ->
        :gen_tcp.close(s)
        "#{port} bindable now"

      {:error, e} ->
        {out, _} = System.cmd("ss", ["-Htanp", "sport = :#{port}"], stderr_to_stdout: true)
        "#{port} not bindable now (#{e}; ss: #{inspect(String.trim(out))})"
    end
  catch
    _, _ -> "#{port} (not checked)"
  end

  defp epmd_state(nil), do: "(no name)"

  defp epmd_state(name) do
    case :erl_epmd.port_please(~c"#{name}", ~c"localhost") do
      {:port, p, _} -> "has #{name} at port #{p} (taken, or the VM is still up)"
      _ -> "has no #{name}"
    end
  end

  defp load do
    case File.read("/proc/loadavg") do
      {:ok, text} -> text |> String.split() |> Enum.take(3) |> Enum.join(" ")
      _ -> "unknown"
    end
  end
end
