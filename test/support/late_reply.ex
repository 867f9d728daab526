defmodule ExESDB.Test.LateReply do
  @moduledoc false
  # Runs on a peer VM whose flushes of data.mdb wait while `hold` exists
  # (build/esdb_io_shim.so, ESDB_SHIM_HOLD_SYNC): an append whose caller
  # stops waiting after the writer took it, then what reached the
  # caller's mailbox once the writer answered everything.

  def run(path, hold) do
    {:ok, store} = :ex_esdb.open(path, %{})
    File.write!(hold, "")
    # the writer takes it and is held in its flush until hold goes
    answer = append_until_taken(store, 1_000, 5)
    held = wait_for(hold <> ".held", System.monotonic_time(:millisecond) + 10_000)
    File.rm!(hold)
    # answered after the held one: its reply, if any, was sent before
    {:ok, _} = :ex_esdb.append(store, "s", :any, [%{event_type: "t"}])
    {:ok, version} = :ex_esdb.stream_version(store, "s")
    :ok = :ex_esdb.close(store)
    {answer, held, version, mailbox([])}
  end

  # A loaded machine may not run the writer before the caller gives up:
  # then the append was withdrawn (never applied) and is tried again with
  # a longer wait.
  defp append_until_taken(store, timeout, tries) do
    case :ex_esdb.append(store, "s", :any, [%{event_type: "t"}], timeout) do
      {:error, :timeout} when tries > 1 -> append_until_taken(store, timeout * 2, tries - 1)
      answer -> answer
    end
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

  defp mailbox(acc) do
    receive do
      msg -> mailbox([msg | acc])
    after
      0 -> Enum.reverse(acc)
    end
  end
end
