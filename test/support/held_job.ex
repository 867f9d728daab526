defmodule ExESDB.Test.HeldJob do
  @moduledoc false
  # Runs on a peer VM whose flushes of any data.mdb wait while `hold`
  # exists (build/esdb_io_shim.so, ESDB_SHIM_HOLD_SYNC): a backup of a NIF
  # store held in the flush of its copy, the verify and backup asked
  # meanwhile, then the held backup's answer and a verify's once it went
  # on. A job that is known to be running, not one that may have ended
  # already on a loaded machine.

  def run(path, dest, hold) do
    {:ok, nif} = :ex_esdb_nif.open(path, %{durability: :nosync})
    File.write!(hold, "")
    :ok = :ex_esdb_nif.backup(nif, ref = make_ref(), dest)
    held = wait_for(hold <> ".held", System.monotonic_time(:millisecond) + 30_000)
    refused = [:ex_esdb_nif.verify(nif, make_ref()), :ex_esdb_nif.backup(nif, make_ref(), dest)]
    File.rm!(hold)
    backup = receive(do: ({^ref, r} -> r))
    :ok = :ex_esdb_nif.verify(nif, ref = make_ref())
    verify = receive(do: ({^ref, r} -> r))
    :ex_esdb_nif.close(nif)
    %{held: held, refused: refused, backup: backup, verify: verify}
  end

  defp wait_for(file, deadline) do
    cond do
      File.exists?(file) ->
        true

      System.monotonic_time(:millisecond) > deadline ->
        false

      true ->
        Process.sleep(5)
        wait_for(file, deadline)
    end
  end
end
