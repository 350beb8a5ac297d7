// Child process for WordPiece training: the `tokenizers` trainer draws progress bars on
// stdout, which must stay clean for `--json`. Args: texts file, output vocab JSON file.
import { writeFileSync } from 'node:fs';
import tokenizers from 'tokenizers';

const { Tokenizer, WordPiece, bertNormalizer, bertPreTokenizer } = tokenizers;
const [textsFile, vocabFile] = process.argv.slice(2) as [string, string];
const trainer = new Tokenizer(WordPiece.empty());
trainer.setNormalizer(bertNormalizer({ lowercase: true, stripAccents: true, cleanText: true, handleChineseChars: true }));
trainer.setPreTokenizer(bertPreTokenizer());
trainer.train([textsFile]);
writeFileSync(vocabFile, JSON.stringify(trainer.getVocab()));
