defmodule ExESDB.Test.Epmd do
  @moduledoc false
  # The epmd the distributed test VM registers with (test_helper.exs):
  # on loopback only (-address; epmd adds the loopback interface of each
  # family), as issue 13 asks. An epmd already running on that port is
  # used as it is: the second one cannot bind it, exits, and `epmd
  # -daemon` still answers 0.

  @doc "Start epmd on `port` on loopback unless one runs; :ok once it answers."
  def ensure_started(port \\ default_port()) do
    address = Enum.join(addresses(), ",")
    {_, 0} = System.cmd("epmd", ["-daemon", "-address", address, "-port", "#{port}"])

    ExESDB.Test.ClusterHelpers.wait_until(
      fn ->
        match?({_, 0}, System.cmd("epmd", ["-port", "#{port}", "-names"], stderr_to_stdout: true))
      end,
      10_000
    )

    :ok
  end

  @doc """
  127.0.0.1, and the address this host's name resolves to when that is
  another loopback one (127.0.1.1 on some systems): nodes named
  name@host look epmd up there.
  """
  def addresses do
    {:ok, host} = :inet.gethostname()

    case :inet.getaddr(host, :inet) do
      {:ok, {127, _, _, _} = ip} -> Enum.uniq(["127.0.0.1", to_string(:inet.ntoa(ip))])
      _ -> ["127.0.0.1"]
    end
  end

  defp default_port, do: String.to_integer(System.get_env("ERL_EPMD_PORT", "4369"))
end
