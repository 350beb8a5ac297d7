// The texts the int8 check runs both models on: short reviews and posts of both polarities, mixed
// and neutral ones, and lengths from two words to a few sentences (fixed, so a check is repeatable).

const SENTENCES = [
  'what a wonderful morning',
  'my phone broke again, so annoying',
  'going to work',
  'best concert ever!!',
  'The battery died after two days and support never answered.',
  'I love this book, read it twice in one week.',
  'not bad, not great either',
  'Terrible fit. The fabric feels cheap and it shrank after one wash.',
  'thanks @anna for the lovely dinner last night',
  'stuck in traffic for two hours http://t.co/x1',
  'It does exactly what it says. Five stars.',
  'worst customer service I have ever dealt with',
  'the movie was long but the ending made it worth it',
  'meh',
  'Arrived broken, returned it, the replacement works fine so far.',
  'so happy for you both, congratulations!',
  'I wanted to like it, I really did, but the story goes nowhere.',
  'rain again today... at least the coffee is good',
  'Great value for the price; the lid could be tighter.',
  'never buying from this seller again',
  'can not stop listening to this album',
  'The instructions were missing and two screws did not fit.',
  'ok',
  'my cat knocked the plant over lol',
];

/**
 * `n` check texts: the sentences above, then pairs and triples of them (so lengths grow), in a fixed order.
 *
 * @example
 * ```ts
 * checkTexts(3); // [ 'what a wonderful morning', 'my phone broke again, so annoying', 'going to work' ]
 * ```
 */
export function checkTexts(n: number): string[] {
  const texts: string[] = [];
  const m = SENTENCES.length;
  for (let i = 0; texts.length < n; i++) {
    const round = Math.floor(i / m);
    const parts = Array.from({ length: 1 + (round % 3) }, (_, k) => SENTENCES[(i * (k * 7 + 1) + k * 5) % m]!);
    texts.push(parts.join(' '));
  }
  return texts;
}
