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
    answer = :ex_esdb.append(store, "s", :any, [%{event_type: "t"}], 2_000)
    held = File.exists?(hold <> ".held")
    File.rm!(hold)
    # answered after the held one: its reply, if any, was sent before
    {:ok, _} = :ex_esdb.append(store, "s", :any, [%{event_type: "t"}])
    {:ok, version} = :ex_esdb.stream_version(store, "s")
    :ok = :ex_esdb.close(store)
    {answer, held, version, mailbox([])}
  end

  defp mailbox(acc) do
    receive do
      msg -> mailbox([msg | acc])
    after
      0 -> Enum.reverse(acc)
    end
  end
end
