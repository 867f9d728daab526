defmodule ExESDB.Test.LogForward do
  @moduledoc false
  # A :logger handler for a :peer node: every event logged there is sent
  # to a pid (the test's) as {:log, level, message}. The peer's own
  # output reaches no capture_log of the test node.

  @doc "Forward node's log events to pid."
  def add(node, pid) do
    :ok = :erpc.call(node, :logger, :add_handler, [__MODULE__, __MODULE__, %{config: %{pid: pid}}])
  end

  @doc false
  def log(%{level: level, msg: msg}, %{config: %{pid: pid}}),
    do: send(pid, {:log, level, text(msg)})

  defp text({:string, s}), do: IO.chardata_to_string(s)
  defp text({:report, r}), do: inspect(r)
  defp text({f, a}), do: f |> :io_lib.format(a) |> IO.chardata_to_string()
end
