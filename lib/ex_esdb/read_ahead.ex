defmodule ExESDB.ReadAhead do
  @moduledoc false
  # A lazy read's next page, read while the reader uses the one before.
  #
  # A process of its own reads one page ahead with the backend's
  # read_page/6 (the NIF's: the core's read, on a dirty IO scheduler; the
  # page is an opaque resource, no terms) and sends it to the reader,
  # which builds its records with page_records/2 on its own scheduler and
  # asks for the next page as soon as it holds one. The core's read and the building
  # of records, one after the other in read/6, then run on two cores at
  # once (docs/PERFORMANCE.md, issue 15).
  #
  # Bounded: at most one page is read ahead of the one the reader builds.
  # The reading process ends after the last page or an error (both sent
  # first), when the reader stops it (stop/1: killed, its messages
  # dropped, none arrive later: they go to an alias that stop/1 removes),
  # or when the reader dies (it monitors the reader). A page is freed
  # when the last process holding it collects its garbage. An
  # enumeration suspended by hand (Enumerable.reduce's :suspend) and then
  # dropped without being halted leaves its read-ahead waiting, with one
  # page, until the reader exits.

  defstruct [:pid, :mon, :tag]

  @type t :: %__MODULE__{pid: pid(), mon: reference(), tag: reference()}

  @doc "Start reading `source` from `from`, `count` events a page."
  @spec start(
          ExESDB.Store.t(),
          ExESDB.Backend.source(),
          non_neg_integer(),
          pos_integer(),
          ExESDB.Backend.direction(),
          boolean()
        ) :: t()
  def start(s, source, from, count, direction, decode) do
    owner = self()
    tag = :erlang.alias()

    {pid, mon} =
      spawn_monitor(fn ->
        watch = Process.monitor(owner)
        read(s, {source, count, direction, decode}, from, tag, watch)
      end)

    %__MODULE__{pid: pid, mon: mon, tag: tag}
  end

  defp read(s, {source, count, direction, decode} = what, from, tag, watch) do
    result = s.backend.read_page(s, source, from, count, direction, decode: decode)
    send(tag, {tag, result})

    case result do
      {:ok, _page, next} when next != :eof ->
        # The page sent is no longer this process's to keep alive until
        # its next collection (a page is ~100 KiB).
        :erlang.garbage_collect(self(), type: :minor)

        receive do
          {^tag, :more} -> read(s, what, next, tag, watch)
          {:DOWN, ^watch, _, _, _} -> :ok
        end

      _ ->
        :ok
    end
  end

  @doc """
  The next page's records and where the page after starts (`:eof` at
  the end), or the read's error; `:down` when the reading process died
  without its page (killed): the caller reads that page itself, from
  where it starts, and this reader is no more.
  """
  @spec next(t(), ExESDB.Store.t()) ::
          {:ok, [ExESDB.EventRecord.t()], :eof | pos_integer()} | {:error, term()} | :down
  def next(%__MODULE__{mon: mon, tag: tag} = ahead, s) do
    receive do
      {^tag, result} ->
        take(ahead, s, result)

      # (a page it sent before it died comes before its DOWN)
      {:DOWN, ^mon, _, _, _} ->
        :erlang.unalias(tag)
        :down
    end
  end

  @doc """
  What `next/2` gives for this reader's message `{tag, result}` that the
  caller received itself (a process whose receive loop takes every
  message, such as a GenServer, sees it there first).
  """
  @spec take(t(), ExESDB.Store.t(), term()) ::
          {:ok, [ExESDB.EventRecord.t()], :eof | pos_integer()} | {:error, term()}
  def take(%__MODULE__{pid: pid, tag: tag}, s, result) do
    case result do
      {:ok, page, next} ->
        if next != :eof, do: more(pid, tag)

        case s.backend.page_records(s, page) do
          {:ok, records} -> {:ok, records, next}
          {:error, _} = error -> error
        end

      {:error, _} = error ->
        error
    end
  end

  # Ask for the next page, and let the reading process start its read now:
  # it waits on this scheduler's run queue, and while this process builds
  # records the scheduler would not run it (another scheduler, asleep,
  # does not take it at once), so the two halves would not overlap.
  defp more(pid, tag) do
    send(pid, {tag, :more})
    :erlang.yield()
  end

  @doc "Stop reading ahead; no message of it arrives after."
  @spec stop(t()) :: :ok
  def stop(%__MODULE__{pid: pid, mon: mon, tag: tag}) do
    :erlang.unalias(tag)
    Process.demonitor(mon, [:flush])
    Process.exit(pid, :kill)
    flush(tag)
  end

  defp flush(tag) do
    receive do
      {^tag, _} -> flush(tag)
    after
      0 -> :ok
    end
  end
end
