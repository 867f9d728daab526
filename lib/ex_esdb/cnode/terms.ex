defmodule ExESDB.CNode.Terms do
  @moduledoc false
  # Stored terms decoded in this VM with the store's checks, without the
  # NIF (a VM on the C node backend loads no native code): no funs, pids,
  # ports or references, no atoms this VM does not know, no compressed
  # term declaring more than 16 MiB. And the C node's event tuples made
  # into records. The C node sends payloads as binaries (docs/PROTOCOL.md,
  # read_records/6): decoded inside a distribution message they would
  # skip these checks.

  alias ExESDB.EventRecord

  # The most a compressed term may declare (the NIF's ETF_MAX_INFLATED).
  @max_inflated 16 * 1024 * 1024

  @doc """
  `{:ok, term}` or `{:error, {:undecodable, why}}`. A term `[:safe]`
  refuses is taken for one naming an unknown atom (stored terms had their
  shape checked when written, by the NIF or the C node; what `[:safe]`
  adds is the atoms); bytes not starting as external term format are
  `:malformed`.
  """
  @spec decode(binary()) :: {:ok, term()} | {:error, {:undecodable, atom()}}
  def decode(<<131, 80, size::32, _::binary>>) when size > @max_inflated,
    do: {:error, {:undecodable, :too_large}}

  def decode(<<131, _::binary>> = bin) do
    term = :erlang.binary_to_term(bin, [:safe])

    case code_in(term) do
      nil -> {:ok, term}
      why -> {:error, {:undecodable, why}}
    end
  rescue
    ArgumentError -> {:error, {:undecodable, :unknown_atom}}
  end

  def decode(bin) when is_binary(bin), do: {:error, {:undecodable, :malformed}}

  # The first fun, pid, port or reference inside a term, or nil.
  defp code_in(t) when is_function(t), do: :fun
  defp code_in(t) when is_pid(t), do: :pid
  defp code_in(t) when is_port(t), do: :port
  defp code_in(t) when is_reference(t), do: :reference
  defp code_in(t) when is_tuple(t), do: t |> Tuple.to_list() |> code_in_list()
  defp code_in(t) when is_map(t), do: t |> Map.to_list() |> code_in_list()
  defp code_in([_ | _] = t), do: code_in_list(t)
  defp code_in(_), do: nil

  defp code_in_list([h | t]), do: code_in(h) || code_in_list(t)
  defp code_in_list({a, b}), do: code_in(a) || code_in(b)
  defp code_in_list([]), do: nil
  # an improper list's tail
  defp code_in_list(t), do: code_in(t)

  @doc """
  Records from the C node's read_records tuples (ids as UUID text). With `decode` the payloads are
  as read (`bytes`, `{:term, b}`, `{:legacy, b}`) and become what the
  NIF's records hold: terms decoded, empty bytes nil, a legacy payload
  that is no term its bytes. A term that may not be decoded fails the
  whole page, as the NIF's read does.
  """
  @spec records([tuple()], boolean()) :: {:ok, [EventRecord.t()]} | {:error, term()}
  def records(tuples, decode), do: records(tuples, decode, nil, [])

  defp records([], _decode, _date, acc), do: {:ok, :lists.reverse(acc)}

  defp records([{pos, sid, v, id, type, data, meta, cause, corr, us} | rest], decode, date, acc)
       when is_integer(us) do
    with {:ok, data} <- payload(data, decode),
         {:ok, meta} <- payload(meta, decode) do
      # the events of one commit share their time stamp: one DateTime
      date =
        with {^us, _} <- date, do: date, else: (_ -> {us, DateTime.from_unix!(us, :microsecond)})

      record = %EventRecord{
        event_id: id,
        event_type: type,
        stream_id: sid,
        event_number: v,
        stream_version: v,
        position: pos,
        data: data,
        metadata: meta,
        causation_id: cause,
        correlation_id: corr,
        created_at: elem(date, 1),
        created_epoch: us
      }

      records(rest, decode, date, [record | acc])
    end
  end

  # (a tuple of another shape: what the NIF's read answers for a record
  # that fails its checks)
  defp records([_ | _], _decode, _date, _acc), do: {:error, {:corrupt, :record}}

  defp payload(bytes, false), do: {:ok, bytes}
  defp payload(<<>>, true), do: {:ok, nil}
  defp payload(bytes, true) when is_binary(bytes), do: {:ok, bytes}
  defp payload({:term, bin}, true), do: decode(bin)
  defp payload({:legacy, <<>>}, true), do: {:ok, nil}

  defp payload({:legacy, bin}, true) do
    case decode(bin) do
      {:error, {:undecodable, :malformed}} -> {:ok, bin}
      decoded -> decoded
    end
  end

  defp payload(_other, _decode), do: {:error, {:corrupt, :record}}
end
