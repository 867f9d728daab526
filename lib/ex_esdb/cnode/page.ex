defmodule ExESDB.CNode.Page do
  @moduledoc false
  # A read_packed page (docs/PROTOCOL.md, "read_packed") cut into
  # %ExESDB.EventRecord{}s, equal field for field to the NIF's
  # read_records. The C node sends a page as one binary: the receiving VM
  # copies it once instead of decoding ~12 terms per event from the
  # distribution message, which cost 3-5x the NIF's read
  # (docs/PERFORMANCE.md). Each event is one binary match.
  #
  # What the C node sends is checked as any page the NIF reads: a page
  # that does not parse, a field out of its range (a date, an id's
  # length, an encoding) answers {:error, {:corrupt, :record}}, never a
  # raise; term payloads are decoded with the store's checks
  # (ExESDB.CNode.Terms.decode/1).
  #
  # Small fields (ids, stream id, type) are copied into heap binaries, so
  # a record kept does not keep its page alive through them (a stream id
  # and a type repeated from the event before are the same term).
  # Payloads are copied too unless they are a quarter of the page or more
  # (the page is up to the store's max_read_bytes, 16 MiB: a kept record
  # keeps at most 4x its payload alive; the NIF's are sub-binaries of 16
  # KiB chunks).

  alias ExESDB.CNode.Terms
  alias ExESDB.EventRecord

  @doc """
  `{:ok, records}` in the page's order, or `{:error, {:corrupt, :record}}`
  (the page does not parse) or `{:error, {:undecodable, why}}` (with
  `decode`, a term payload that may not be decoded: the whole page fails,
  as the NIF's read does).
  """
  @spec records(binary(), boolean()) :: {:ok, [EventRecord.t()]} | {:error, term()}
  def records(page, decode) when is_binary(page) and is_boolean(decode),
    do: cut(page, {decode, byte_size(page)}, nil, nil, nil, [])

  def records(_page, _decode), do: {:error, {:corrupt, :record}}

  defp cut(<<>>, _decode, _sid, _type, _date, acc), do: {:ok, :lists.reverse(acc)}

  # The event header (57 bytes, big-endian; c_src/cnode/reads.c
  # encode_packed), then event id, stream id, type, causation id,
  # correlation id, data, metadata.
  defp cut(
         <<pos::64, v::64, us::64, y::32, mo::8, d::8, h::8, mi::8, s::8, usec::32, de::8, me::8,
           cl::8, rl::8, sl::32, tl::32, dl::32, ml::32, id::binary-36, sid::binary-size(sl),
           type::binary-size(tl), cause::binary-size(cl), corr::binary-size(rl),
           data::binary-size(dl), meta::binary-size(ml), rest::binary>>,
         decode,
         prev_sid,
         prev_type,
         prev_date,
         acc
       )
       when mo in 1..12 and d in 1..31 and h < 24 and mi < 60 and s < 60 and usec < 1_000_000 and
              cl in [0, 36] and rl in [0, 36] and de < 3 and me < 3 do
    with {:ok, date} <- date(prev_date, us, y, mo, d, h, mi, s, usec),
         {:ok, data} <- payload(de, data, decode),
         {:ok, meta} <- payload(me, meta, decode) do
      sid = if sid == prev_sid, do: prev_sid, else: :binary.copy(sid)
      type = if type == prev_type, do: prev_type, else: :binary.copy(type)

      record = %EventRecord{
        event_id: :binary.copy(id),
        event_type: type,
        stream_id: sid,
        event_number: v,
        stream_version: v,
        position: pos,
        data: data,
        metadata: meta,
        causation_id: opt_id(cause),
        correlation_id: opt_id(corr),
        created_at: elem(date, 1),
        created_epoch: us
      }

      cut(rest, decode, sid, type, date, [record | acc])
    end
  end

  defp cut(_page, _decode, _sid, _type, _date, _acc), do: {:error, {:corrupt, :record}}

  # The events of one commit share their time stamp: one DateTime, its
  # date checked once (a day the month lacks, a year out of Calendar.ISO's
  # range would make an invalid %DateTime{}).
  defp date({us, _} = prev, us, _y, _mo, _d, _h, _mi, _s, _usec), do: {:ok, prev}

  defp date(_prev, us, y, mo, d, h, mi, s, usec) do
    if Calendar.ISO.valid_date?(y, mo, d),
      do:
        {:ok,
         {us,
          %DateTime{
            year: y,
            month: mo,
            day: d,
            hour: h,
            minute: mi,
            second: s,
            microsecond: {usec, 6},
            time_zone: "Etc/UTC",
            zone_abbr: "UTC",
            utc_offset: 0,
            std_offset: 0,
            calendar: Calendar.ISO
          }}},
      else: {:error, {:corrupt, :record}}
  end

  defp opt_id(<<>>), do: nil
  defp opt_id(id), do: :binary.copy(id)

  # Encodings as stored: 0 bytes, 1 term, 2 legacy (a read sends them as
  # 0 without decode; a session's push always marks them, and without
  # decode they are bytes). With decode, as Terms.records/2: terms
  # decoded, empty bytes nil, a legacy payload that is no term its bytes.
  defp payload(0, <<>>, {true, _}), do: {:ok, nil}
  defp payload(enc, bytes, {false, page}) when enc in 0..2, do: {:ok, own(bytes, page)}
  defp payload(0, bytes, {_, page}), do: {:ok, own(bytes, page)}
  defp payload(1, bin, {true, _}), do: Terms.decode(bin)
  defp payload(2, <<>>, {true, _}), do: {:ok, nil}

  defp payload(2, bin, {true, page}) do
    case Terms.decode(bin) do
      {:error, {:undecodable, :malformed}} -> {:ok, own(bin, page)}
      decoded -> decoded
    end
  end

  defp payload(_enc, _bytes, _decode), do: {:error, {:corrupt, :record}}

  # a copy, unless the payload is a quarter of the page or more
  defp own(bytes, page) when byte_size(bytes) * 4 < page, do: :binary.copy(bytes)
  defp own(bytes, _page), do: bytes
end
