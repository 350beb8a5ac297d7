// The unit every stage passes along: one text (labelled or not) with a stable id and a text hash.

export interface Example {
  /** Stable id: the tweet id for Sentiment140, else a content hash ("h" + 16 hex digits). */
  id: string;
  /** 16 hex digits of SHA-256 of `text`: the cache key for teacher outputs. */
  textHash: string;
  /** Class index into LABEL_NAMES[classes]; null for an unlabelled row (`--format text`, `--unlabeled`). */
  label: number | null;
  /** The text models read. For Amazon reviews: see `joinTitleAndBody`. */
  text: string;
  /** Amazon review title and body, kept apart. */
  title?: string;
  body?: string;
  /** Where the row came from. */
  file: string;
  line: number;
}

/**
 * How a review's title and body become one model text: `"<title>: <body>"`, the form
 * the fastText release of Amazon polarity uses, so the CSV and fastText forms of one
 * review give the same text, id and text hash. An empty part is left out.
 */
export function joinTitleAndBody(title: string, body: string): string {
  if (title === '') return body;
  if (body === '') return title;
  return `${title}: ${body}`;
}

/** The id of a row that carries no id of its own: its text hash, marked with "h". */
export function contentId(textHash: string): string {
  return `h${textHash}`;
}

/** An example that carries a class. */
export type LabelledExample = Example & { label: number };

export function isLabelled(ex: Example): ex is LabelledExample {
  return ex.label !== null;
}
